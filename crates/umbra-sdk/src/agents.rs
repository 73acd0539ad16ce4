//! AI agents from the client side: reading an agent's record with a proof, sealing secrets to its contract
//! key, and calling it through a worker of its cluster, sealed (the default: not even the network sees the
//! request) or plain, checking the worker's signature against its attested record on chain either way.

use crate::{Client, SdkError};
use rand::SeedableRng as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use umbra_crypto::{Keypair, open_envelope, seal_envelope, x25519_public};
use umbra_types::agents::{
    AgentCaller, AgentHttpRequest, AgentHttpResponse, AgentRecord, LABEL_LOGS, LABEL_RECEIPTS, LABEL_REQUEST,
    LABEL_RESPONSE, LABEL_SECRET, LogLine, LogsRequest, MultisigMembers, ReceiptBatchReply, ReceiptCommit, SealedReply,
    SealedRequestPlain, caller_signing_bytes, logs_signing_bytes, plain_request_hash, request_aad,
    response_signing_bytes, secret_aad,
};
use umbra_types::contracts::{ContractId, ContractRecord};
use umbra_types::registry::KeyEpoch;
use umbra_types::state_keys::StateKey;
use umbra_types::{Hash, WorkerId, decode, encode, sha256};

fn err(reason: impl Into<String>) -> SdkError {
    SdkError::Contract(reason.into())
}

fn rng() -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::from_seed(rand::random())
}

impl Client {
    /// An agent's record, proven against a finalized header (`None`: no such agent).
    pub async fn agent(&self, id: &ContractId) -> Result<Option<AgentRecord>, SdkError> {
        let (value, _) = self.state_value(&StateKey::Agent(*id)).await?;
        value
            .map(|v| decode(&v, 1 << 22).map_err(|e| err(format!("the proven agent record does not decode: {e}"))))
            .transpose()
    }
}

/// Seals secret `name = value` to the agent's newest published contract key: the envelope and its epoch.
pub fn seal_secret(
    chain_id: &str,
    contract: &ContractRecord,
    name: &str,
    value: &[u8],
) -> Result<(Vec<u8>, KeyEpoch), SdkError> {
    let (key_epoch, public) = contract
        .keys
        .last()
        .copied()
        .ok_or_else(|| err("the agent's cluster has not published its keys yet; try again shortly"))?;
    let aad = secret_aad(chain_id, &contract.id, name, key_epoch);
    let sealed = seal_envelope(&public.x25519, LABEL_SECRET, &aad, value, &mut rng())
        .map_err(|e| err(format!("cannot seal to the agent's key: {e}")))?;
    Ok((sealed, key_epoch))
}

/// An agent's answer, checked: signed by `worker`, an active member of the agent's cluster whose attested
/// record the chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAnswer {
    /// The worker that answered.
    pub worker: WorkerId,
    /// The status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Checks that `worker` is registered, active and a member of the agent's cluster.
async fn check_worker(
    client: &Client,
    worker: &WorkerId,
    agent: &ContractId,
) -> Result<umbra_types::WorkerRecord, SdkError> {
    let contract = client.contract(agent).await?.ok_or_else(|| err(format!("no agent {}", Hash(*agent))))?;
    let (record, at) = client.worker(worker).await?;
    let record = record.ok_or_else(|| err(format!("worker {} is not registered on chain", Hash(*worker))))?;
    if !record.is_active(at.header().height) {
        return Err(err(format!("worker {} is revoked or its attestation expired", Hash(*worker))));
    }
    if record.cluster != Some(contract.cluster) {
        return Err(err(format!(
            "worker {} is not a member of the agent's cluster {}",
            Hash(*worker),
            contract.cluster
        )));
    }
    Ok(record)
}

/// Calls `agent` through the worker at `worker_url`, sealed to the worker's attested X25519 key (checked on
/// chain first), signed by `caller` if given; opens and checks the sealed, signed reply.
pub async fn call_agent(
    client: &Client,
    worker_url: &str,
    agent: &ContractId,
    request: AgentHttpRequest,
    caller: Option<&Keypair>,
) -> Result<AgentAnswer, SdkError> {
    let info = crate::worker_info(worker_url).await?;
    let chain = client.chain_info().await?;
    let record = check_worker(client, &info.id.0, agent).await?;
    if record.x25519 != info.x25519.0 {
        return Err(err("the worker's key is not the one its attestation on chain binds"));
    }
    let reply_secret: [u8; 32] = rand::random();
    let mut p =
        SealedRequestPlain { request, reply_to: x25519_public(&reply_secret), nonce: rand::random(), caller: None };
    if let Some(kp) = caller {
        let signature = kp.sign(&caller_signing_bytes(&chain.chain_id, agent, &p));
        p.caller = Some(AgentCaller { address: kp.address(), signature });
    }
    let envelope =
        seal_envelope(&record.x25519, LABEL_REQUEST, &request_aad(&chain.chain_id, agent), &encode(&p), &mut rng())
            .map_err(|e| err(format!("cannot seal to the worker's key: {e}")))?;
    let path = format!("/agents/{}/sealed", hex::encode(agent));
    let (status, _, body) = http(worker_url, "POST", &path, &[], &envelope).await?;
    if status != 200 {
        return Err(err(format!(
            "the worker refused the sealed request ({status}): {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let reply: SealedReply = decode(&body, 1 << 24).map_err(|e| err(format!("the reply does not decode: {e}")))?;
    if reply.worker != record.id {
        return Err(err("the reply names another worker"));
    }
    let request_hash = sha256(&[&envelope]);
    umbra_crypto::verify(
        &umbra_types::Address(record.id),
        &response_signing_bytes(agent, &request_hash, 200, &reply.sealed),
        &reply.signature,
    )
    .map_err(|_| err("the worker's signature over the reply does not verify"))?;
    let plain = open_envelope(&reply_secret, LABEL_RESPONSE, &request_hash.0, &reply.sealed)
        .map_err(|e| err(format!("the reply does not open with our key: {e}")))?;
    let r: AgentHttpResponse =
        decode(&plain, plain.len()).map_err(|e| err(format!("the response does not decode: {e}")))?;
    Ok(AgentAnswer { worker: record.id, status: r.status, headers: r.headers, body: r.body })
}

/// Calls a public `agent` over plain HTTP and checks `x-umbra-signature` against the answering worker's
/// record on chain.
pub async fn call_agent_plain(
    client: &Client,
    worker_url: &str,
    agent: &ContractId,
    request: AgentHttpRequest,
) -> Result<AgentAnswer, SdkError> {
    let path = format!("/agents/{}{}", hex::encode(agent), request.path);
    let (status, headers, body) = http(worker_url, &request.method, &path, &request.headers, &request.body).await?;
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let worker: WorkerId = header("x-umbra-worker")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| err(format!("the answer ({status}) carries no x-umbra-worker header")))?;
    let signature: [u8; 64] = header("x-umbra-signature")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| err("the answer carries no valid x-umbra-signature header"))?;
    let record = check_worker(client, &worker, agent).await?;
    let request_hash = plain_request_hash(agent, &request.method, &request.path, &request.body);
    umbra_crypto::verify(
        &umbra_types::Address(record.id),
        &response_signing_bytes(agent, &request_hash, status, &body),
        &signature,
    )
    .map_err(|_| err("the worker's signature over the answer does not verify"))?;
    Ok(AgentAnswer { worker, status, headers, body })
}

/// Reads an agent's `console` lines kept by the worker at `worker_url`, as its `owner` (sealed to a fresh key).
pub async fn agent_logs(
    client: &Client,
    worker_url: &str,
    agent: &ContractId,
    owner: &Keypair,
) -> Result<Vec<LogLine>, SdkError> {
    let chain = client.chain_info().await?;
    let reply_secret: [u8; 32] = rand::random();
    let req = owner_request(client, &chain.chain_id, agent, owner, &reply_secret).await?;
    let path = format!("/agents/{}/logs", hex::encode(agent));
    let (status, _, body) = http(worker_url, "POST", &path, &[], &encode(&req)).await?;
    if status != 200 {
        return Err(err(format!("the worker refused the logs request ({status}): {}", String::from_utf8_lossy(&body))));
    }
    let plain = open_envelope(&reply_secret, LABEL_LOGS, &request_aad(&chain.chain_id, agent), &body)
        .map_err(|e| err(format!("the logs do not open with our key: {e}")))?;
    decode(&plain, plain.len()).map_err(|e| err(format!("the logs do not decode: {e}")))
}

/// An agent's committed egress receipt batches (worker, batch number, Merkle root, count, height), proven
/// against a finalized header; oldest first.
pub async fn agent_receipt_commits(client: &Client, agent: &ContractId) -> Result<Vec<ReceiptCommit>, SdkError> {
    let (value, _) = client.state_value(&StateKey::AgentReceipts(*agent)).await?;
    value
        .map(|v| decode(&v, 1 << 24).map_err(|e| err(format!("the proven receipt commits do not decode: {e}"))))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The owner's request for the egress receipts a worker kept for `agent` (the batches it committed, each
/// receipt with its inclusion proof), sealed to a fresh key of ours. Check each proof against
/// [`agent_receipt_commits`] before trusting a receipt.
pub async fn agent_receipts(
    client: &Client,
    worker_url: &str,
    agent: &ContractId,
    owner: &Keypair,
) -> Result<Vec<ReceiptBatchReply>, SdkError> {
    let chain = client.chain_info().await?;
    let reply_secret: [u8; 32] = rand::random();
    let req = owner_request(client, &chain.chain_id, agent, owner, &reply_secret).await?;
    let path = format!("/agents/{}/receipts", hex::encode(agent));
    let (status, _, body) = http(worker_url, "POST", &path, &[], &encode(&req)).await?;
    if status != 200 {
        return Err(err(format!(
            "the worker refused the receipts request ({status}): {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let plain = open_envelope(&reply_secret, LABEL_RECEIPTS, &request_aad(&chain.chain_id, agent), &body)
        .map_err(|e| err(format!("the receipts do not open with our key: {e}")))?;
    decode(&plain, plain.len()).map_err(|e| err(format!("the receipts do not decode: {e}")))
}

/// A signed owner's request (logs, receipts) with replies sealed to `reply_secret`'s key. When the agent's
/// owner is a multisig (proven on chain) of which `signer` is a member, the request names its members and
/// threshold so the worker can check that.
async fn owner_request(
    client: &Client,
    chain_id: &str,
    agent: &ContractId,
    signer: &Keypair,
    reply_secret: &[u8; 32],
) -> Result<LogsRequest, SdkError> {
    let reply_to = x25519_public(reply_secret);
    let nonce: [u8; 16] = rand::random();
    let signature = signer.sign(&logs_signing_bytes(chain_id, agent, &reply_to, &nonce));
    let mut member_of = None;
    if let Some(record) = client.agent(agent).await?
        && record.owner != signer.address()
        && let Some(m) = client.multisig(&record.owner).await?
        && m.members.contains(&signer.address())
    {
        member_of = Some(MultisigMembers { members: m.members, threshold: m.threshold });
    }
    Ok(LogsRequest { reply_to, nonce, owner: signer.address(), signature, member_of })
}

/// One HTTP/1.1 exchange (`Connection: close`, no chunked answers): status, headers, body.
pub(crate) async fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), SdkError> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| err(format!("worker URL {url}: only http://HOST:PORT is supported")))?
        .trim_end_matches('/');
    let unreachable = |e: String| err(format!("cannot reach the worker at {url}: {e}"));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.map_err(|e| unreachable(e.to_string()))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            let skip = ["host", "content-length", "connection", "transfer-encoding"];
            if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) && !k.contains(['\r', '\n']) && !v.contains(['\r', '\n'])
            {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.map_err(|e| unreachable(e.to_string()))?;
        stream.write_all(body).await.map_err(|e| unreachable(e.to_string()))?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.map_err(|e| unreachable(e.to_string()))?;
        Ok::<_, SdkError>(out)
    };
    let raw = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| unreachable("no answer within 60 s".into()))??;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| err("a malformed HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| err(format!("a malformed HTTP status line: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        return Err(err("chunked HTTP answers are not supported"));
    }
    Ok((status, headers, raw[split + 4..].to_vec()))
}
