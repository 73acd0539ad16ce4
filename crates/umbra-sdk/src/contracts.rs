//! Confidential contracts from the client side: sealing a command to a contract's published key, reading a
//! contract's record with a proof, and making a sealed query to a worker whose key is checked against its
//! attested record on chain.

use crate::{Client, SdkError};
use rand::SeedableRng as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use umbra_crypto::{Keypair, open_envelope, seal_envelope, x25519_public};
use umbra_types::contracts::{
    CommandPlain, ContractId, ContractRecord, LABEL_COMMAND, LABEL_QUERY, LABEL_QUERY_ANSWER, QueryAnswer, QueryCaller,
    QueryPlain, QueryReply, command_aad, query_caller_bytes, query_reply_bytes,
};
use umbra_types::registry::KeyEpoch;
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, WorkerId, decode, encode, sha256};

fn err(reason: impl Into<String>) -> SdkError {
    SdkError::Contract(reason.into())
}

fn rng() -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::from_seed(rand::random())
}

impl Client {
    /// A contract's record, proven against a finalized header (`None`: no such contract).
    pub async fn contract(&self, id: &ContractId) -> Result<Option<ContractRecord>, SdkError> {
        let (value, _) = self.state_value(&StateKey::Contract(*id)).await?;
        value
            .map(|v| decode(&v, 1 << 20).map_err(|e| err(format!("the proven contract record does not decode: {e}"))))
            .transpose()
    }

    /// A contract's `seq`-th command, proven (`None`: not ordered yet).
    pub async fn contract_command(
        &self,
        id: &ContractId,
        seq: u64,
    ) -> Result<Option<umbra_types::contracts::CommandRecord>, SdkError> {
        let (value, _) = self.state_value(&StateKey::ContractCommand { contract: *id, seq }).await?;
        value
            .map(|v| decode(&v, 1 << 20).map_err(|e| err(format!("the proven command does not decode: {e}"))))
            .transpose()
    }
}

/// Seals `method(args)` for `contract` from `sender`: the envelope and the key epoch it is sealed to (the
/// newest the contract's cluster published).
pub fn seal_command(
    chain_id: &str,
    contract: &ContractRecord,
    sender: &Address,
    method: &str,
    args: &[u8],
) -> Result<(Vec<u8>, KeyEpoch), SdkError> {
    let (key_epoch, public) = contract
        .keys
        .last()
        .copied()
        .ok_or_else(|| err("the contract's cluster has not published its keys yet; try again shortly"))?;
    let plain = CommandPlain { method: method.into(), args: args.to_vec() };
    let aad = command_aad(chain_id, &contract.id, key_epoch, sender);
    let sealed = seal_envelope(&public.x25519, LABEL_COMMAND, &aad, &encode(&plain), &mut rng())
        .map_err(|e| err(format!("cannot seal to the contract's key: {e}")))?;
    Ok((sealed, key_epoch))
}

/// What a worker's `/info` says about itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct WorkerInfo {
    /// Its id.
    pub id: Hash,
    /// Its HPKE key.
    pub x25519: Hash,
    /// Its chain.
    pub chain_id: String,
}

/// A query's answer, opened and checked: signed by the worker, whose key matched its attested record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedQuery {
    /// The worker that answered.
    pub worker: WorkerId,
    /// The method's output, or why it failed.
    pub result: Result<Vec<u8>, String>,
    /// Gas used.
    pub gas_used: u64,
    /// The height of the worker's state.
    pub height: u64,
    /// The contract's state root the query ran on.
    pub state_root: Hash,
}

/// Reads a worker's `/info`.
pub async fn worker_info(url: &str) -> Result<WorkerInfo, SdkError> {
    let (status, body) = http(url, "GET", "/info", &[]).await?;
    if status != 200 {
        return Err(err(format!("{url}/info answered {status}: {}", String::from_utf8_lossy(&body))));
    }
    serde_json::from_slice(&body).map_err(|e| err(format!("{url}/info is not worker info: {e}")))
}

/// Queries `contract.method(args)` through the worker at `worker_url`: checks the worker's X25519 key against
/// its attested, active record on the chain `client` follows, seals the query to it (signed by `caller` if
/// given), and opens and checks the sealed, signed reply.
pub async fn query(
    client: &Client,
    worker_url: &str,
    contract: &ContractId,
    method: &str,
    args: &[u8],
    caller: Option<&Keypair>,
) -> Result<VerifiedQuery, SdkError> {
    let info = worker_info(worker_url).await?;
    let chain = client.chain_info().await?;
    if info.chain_id != chain.chain_id {
        return Err(err(format!("the worker serves chain {}, the node {}", info.chain_id, chain.chain_id)));
    }
    let (record, at) = client.worker(&info.id.0).await?;
    let record = record.ok_or_else(|| err(format!("worker {} is not registered on chain", info.id)))?;
    if record.x25519 != info.x25519.0 {
        return Err(err("the worker's key is not the one its attestation on chain binds"));
    }
    if !record.is_active(at.header().height) {
        return Err(err(format!("worker {} is revoked or its attestation expired", info.id)));
    }
    let reply_secret: [u8; 32] = rand::random();
    let mut q = QueryPlain {
        contract: *contract,
        method: method.into(),
        args: args.to_vec(),
        reply_to: x25519_public(&reply_secret),
        nonce: rand::random(),
        caller: None,
    };
    if let Some(kp) = caller {
        let signature = kp.sign(&query_caller_bytes(&chain.chain_id, &q));
        q.caller = Some(QueryCaller { address: kp.address(), signature });
    }
    let envelope = seal_envelope(&record.x25519, LABEL_QUERY, chain.chain_id.as_bytes(), &encode(&q), &mut rng())
        .map_err(|e| err(format!("cannot seal to the worker's key: {e}")))?;
    let (status, body) = http(worker_url, "POST", "/query", &envelope).await?;
    if status != 200 {
        return Err(err(format!("the worker refused the query: {}", String::from_utf8_lossy(&body))));
    }
    let reply: QueryReply = decode(&body, 1 << 24).map_err(|e| err(format!("the reply does not decode: {e}")))?;
    if reply.worker != record.id {
        return Err(err("the reply names another worker"));
    }
    let request_hash = sha256(&[&envelope]);
    umbra_crypto::verify(&Address(record.id), &query_reply_bytes(&request_hash, &reply.sealed), &reply.signature)
        .map_err(|_| err("the reply's signature does not verify under the worker's key"))?;
    let plain = open_envelope(&reply_secret, LABEL_QUERY_ANSWER, &request_hash.0, &reply.sealed)
        .map_err(|e| err(format!("the reply does not open: {e}")))?;
    let answer: QueryAnswer = decode(&plain, 1 << 24).map_err(|e| err(format!("the answer does not decode: {e}")))?;
    Ok(VerifiedQuery {
        worker: reply.worker,
        result: answer.result,
        gas_used: answer.gas_used,
        height: answer.height,
        state_root: answer.state_root,
    })
}

/// A minimal HTTP/1.1 exchange (`http://host:port` only, `Connection: close`): status and body.
async fn http(url: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), SdkError> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| err(format!("worker URL {url}: only http://HOST:PORT is supported")))?
        .trim_end_matches('/');
    let unreachable = |e: String| err(format!("cannot reach the worker at {url}: {e}"));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.map_err(|e| unreachable(e.to_string()))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(|e| unreachable(e.to_string()))?;
        stream.write_all(body).await.map_err(|e| unreachable(e.to_string()))?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.map_err(|e| unreachable(e.to_string()))?;
        Ok::<_, SdkError>(out)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| unreachable("no answer within 30 s".into()))??;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| err("a malformed HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| err(format!("a malformed HTTP status line: {head}")))?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err(err("chunked HTTP answers are not supported"));
    }
    Ok((status, raw[split + 4..].to_vec()))
}
