//! The JSON-RPC client: one typed method per RPC method of the contract in `umbra-rpc`.

use crate::account::{VerifiedAccount, verify_account};
use crate::error::SdkError;
use crate::trust::{self, TrustPin};
use jsonrpsee::core::client::{ClientT, Error as ClientError, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use umbra_light::{Finality, LightClient, VerifiedHeader};
use umbra_rpc::{
    AccountResponse, BlockId, BlockResponse, ChainInfo, ErrorCode, HeadResponse, Health, RpcError, TxResponse,
    TxStatus, methods,
};
use umbra_types::{Address, Hash, Header, SignedTransaction};

/// How long one request may take before the client gives up.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Client::wait_for_tx`] asks the node again.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How many later blocks are fetched, at most, to verify a block the node has no certificate for
/// (finality covers ancestors, so a certified descendant verifies it).
const MAX_DESCENDANT_WALK: u64 = 64;

/// How long to wait for the next blocks when a block without a certificate is the node's head.
const DESCENDANT_WAIT: Duration = Duration::from_secs(10);

/// What the client trusts and the light client that follows the chain from it.
#[derive(Default)]
struct Trust {
    /// Where pins are kept (`None`: pinned for this client's lifetime only).
    store: Option<PathBuf>,
    /// A genesis hash the caller requires (overrides a stored pin).
    genesis: Option<Hash>,
    /// The light client, once the chain is pinned.
    light: Option<LightClient>,
}

/// A block whose header the light client verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBlock {
    /// The node's answer (block, receipts, certificate). Its header, and with it the
    /// transactions (through `tx_root`), are verified.
    pub response: BlockResponse,
    /// How the header was verified.
    pub finality: Finality,
}

/// A connection to one node's JSON-RPC endpoint over HTTP.
///
/// Every method maps node errors to [`SdkError::Rpc`] with the contract's [`ErrorCode`], and
/// network failures to [`SdkError::Unreachable`].
///
/// **Trust.** [`Client::account`] and [`Client::verified_block`] check the node's answers with a
/// light client ([`umbra_light`]). The chain (its genesis block, whose header names the first
/// committee) is pinned on first contact: for the client's lifetime by default, or across runs
/// with [`Client::with_trust_store`], which keeps `{chain_id, genesis_hash, committee}` in
/// `DIR/<chain_id>.json` and refuses a node that serves another genesis
/// ([`SdkError::Untrusted`]). [`Client::with_trusted_genesis`] requires a given genesis hash
/// instead (and replaces a stored pin). Clones share the pin and the light client.
#[derive(Clone)]
pub struct Client {
    url: String,
    http: HttpClient,
    trust: Arc<Mutex<Trust>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the node at `url` (`http://` or `https://`), with [`DEFAULT_REQUEST_TIMEOUT`].
    /// Nothing is sent until the first call.
    pub fn new(url: impl Into<String>) -> Result<Client, SdkError> {
        Client::with_timeout(url, DEFAULT_REQUEST_TIMEOUT)
    }

    /// A client whose requests give up after `timeout`.
    pub fn with_timeout(url: impl Into<String>, timeout: Duration) -> Result<Client, SdkError> {
        let url = url.into();
        let invalid = |reason: String| SdkError::InvalidUrl { url: url.clone(), reason };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("expected a URL starting with http:// or https://".into()));
        }
        let http =
            HttpClientBuilder::default().request_timeout(timeout).build(&url).map_err(|e| invalid(innermost(&e)))?;
        Ok(Client { url, http, trust: Arc::default() })
    }

    /// Pins chains in `dir` (normally [`crate::trust_dir`] of the Umbra home): the first contact
    /// with a chain writes its pin there (mode 0600), later contacts must match it.
    pub fn with_trust_store(self, dir: impl Into<PathBuf>) -> Client {
        self.lock_trust().store = Some(dir.into());
        self
    }

    /// Requires the chain's genesis block to hash to `genesis`: an explicit trust anchor. A
    /// stored pin for the chain that differs is replaced by this one.
    pub fn with_trusted_genesis(self, genesis: Hash) -> Client {
        self.lock_trust().genesis = Some(genesis);
        self
    }

    fn lock_trust(&self) -> MutexGuard<'_, Trust> {
        // The guarded data stays consistent even if a holder panicked: every update is one assignment.
        self.trust.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: ArrayParams,
    ) -> Result<R, SdkError> {
        self.http.request(method, params).await.map_err(|e| map_client_error(&self.url, method, e))
    }

    /// `chain_info`: chain id, token, committee and fee schedule.
    pub async fn chain_info(&self) -> Result<ChainInfo, SdkError> {
        self.call(methods::CHAIN_INFO, rpc_params![]).await
    }

    /// `chain_getHead`: the latest finalized header.
    pub async fn head(&self) -> Result<HeadResponse, SdkError> {
        self.call(methods::CHAIN_GET_HEAD, rpc_params![]).await
    }

    /// `chain_getBlock`: a block with its receipts and finality certificate (`None`: the latest).
    pub async fn block(&self, id: Option<BlockId>) -> Result<BlockResponse, SdkError> {
        self.call(methods::CHAIN_GET_BLOCK, rpc_params![id]).await
    }

    /// `tx_submit`: hands a signed transaction to the node's mempool and returns its hash.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<Hash, SdkError> {
        let hash: Hash = self.call(methods::TX_SUBMIT, rpc_params![hex::encode(tx.to_bytes())]).await?;
        if hash != tx.hash() {
            return Err(SdkError::BadResponse {
                method: methods::TX_SUBMIT,
                reason: format!("the node names the transaction {hash}, but its hash is {}", tx.hash()),
            });
        }
        Ok(hash)
    }

    /// `tx_get`: a transaction's status and, once finalized, its receipt.
    pub async fn tx(&self, hash: Hash) -> Result<TxResponse, SdkError> {
        self.call(methods::TX_GET, rpc_params![hash]).await
    }

    /// `mempool_nextNonce`: the nonce the next transaction from `address` should carry.
    pub async fn next_nonce(&self, address: &Address) -> Result<u64, SdkError> {
        self.call(methods::MEMPOOL_NEXT_NONCE, rpc_params![address]).await
    }

    /// `system_health`.
    pub async fn health(&self) -> Result<Health, SdkError> {
        self.call(methods::SYSTEM_HEALTH, rpc_params![]).await
    }

    /// `state_getAccount` with a proof, checked with the light client: the proof must
    /// authenticate the record against the state root of the header the node names (see
    /// [`verify_account`]), and that header must be final on the trusted chain (its finality
    /// certificate, or the pinned genesis). The balance and nonce returned are the proven ones.
    pub async fn account(&self, address: &Address) -> Result<VerifiedAccount, SdkError> {
        let resp: AccountResponse = self.call(methods::STATE_GET_ACCOUNT, rpc_params![address, true]).await?;
        // The proof first: a node lying about the value is named as such, whatever its header.
        let mut account = verify_account(address, &resp)?;
        let verified = self.verify_header(&resp.header).await?;
        let proof = resp.proof.as_deref().unwrap_or_default();
        let bytes = hex::decode(proof.strip_prefix("0x").unwrap_or(proof))
            .map_err(|e| SdkError::BadProof { address: *address, reason: format!("the proof is not hex: {e}") })?;
        let record = self
            .light_client()?
            .verify_account(&verified, address, &bytes)
            .map_err(|e| SdkError::BadProof { address: *address, reason: e.to_string() })?;
        if record.is_some() != account.exists {
            return Err(SdkError::BadProof { address: *address, reason: "the light client proves otherwise".into() });
        }
        account.finality = Some(verified.finality().clone());
        Ok(account)
    }

    /// `registry_status`: policy, gatekeepers and key epochs, clusters and workers (as the node reports
    /// them; use [`Client::worker`] for a proven record).
    pub async fn registry_status(&self) -> Result<umbra_rpc::RegistryStatus, SdkError> {
        self.call(methods::REGISTRY_STATUS, rpc_params![]).await
    }

    /// `gov_proposals`: every proposal, newest first, with its tally so far (as the node reports them).
    pub async fn gov_proposals(&self) -> Result<Vec<umbra_rpc::GovProposalInfo>, SdkError> {
        self.call(methods::GOV_PROPOSALS, rpc_params![]).await
    }

    /// `gov_proposal`: one proposal with its tally so far.
    pub async fn gov_proposal(&self, id: u64) -> Result<umbra_rpc::GovProposalInfo, SdkError> {
        self.call(methods::GOV_PROPOSAL, rpc_params![id]).await
    }

    /// `treasury_info`: the treasury's balance and spend history.
    pub async fn treasury_info(&self) -> Result<umbra_rpc::TreasuryInfo, SdkError> {
        self.call(methods::TREASURY_INFO, rpc_params![]).await
    }

    /// `econ_pools`: every stake pool with its value and share price (as the node reports them).
    pub async fn econ_pools(&self) -> Result<Vec<umbra_rpc::EconPoolInfo>, SdkError> {
        self.call(methods::ECON_POOLS, rpc_params![]).await
    }

    /// `econ_pool`: one stake pool with its value and share price.
    pub async fn econ_pool(&self, id: u64) -> Result<umbra_rpc::EconPoolInfo, SdkError> {
        self.call(methods::ECON_POOL, rpc_params![id]).await
    }

    /// `econ_vault`: one vault with its value and pool allocations.
    pub async fn econ_vault(&self, id: u64) -> Result<umbra_rpc::EconVaultInfo, SdkError> {
        self.call(methods::ECON_VAULT, rpc_params![id]).await
    }

    /// `econ_worker`: a worker's pool, benchmark, session and heartbeats.
    pub async fn econ_worker(&self, id: &umbra_types::WorkerId) -> Result<umbra_rpc::EconWorkerInfo, SdkError> {
        self.call(methods::ECON_WORKER, rpc_params![hex::encode(id)]).await
    }

    /// `econ_position`: one account's shares of a pool or vault and their value.
    pub async fn econ_position(
        &self,
        target: umbra_rpc::EconTarget,
        holder: &Address,
    ) -> Result<umbra_rpc::EconPositionInfo, SdkError> {
        self.call(methods::ECON_POSITION, rpc_params![target, holder]).await
    }

    /// `econ_budget`: the current per-block rewards budget and the reserve left.
    pub async fn econ_budget(&self) -> Result<umbra_rpc::EconBudgetInfo, SdkError> {
        self.call(methods::ECON_BUDGET, rpc_params![]).await
    }

    /// `econ_compute_stake`: compute stake on one contract.
    pub async fn econ_compute_stake(&self, contract: &[u8; 32]) -> Result<umbra_rpc::EconComputeStakeInfo, SdkError> {
        self.call(methods::ECON_COMPUTE_STAKE, rpc_params![hex::encode(contract)]).await
    }

    /// `econ_cluster_stakes`: every contract with compute stake on a cluster.
    pub async fn econ_cluster_stakes(&self, cluster: u32) -> Result<umbra_rpc::EconClusterStakesInfo, SdkError> {
        self.call(methods::ECON_CLUSTER_STAKES, rpc_params![cluster]).await
    }

    /// `state_getValue`, verified: the raw value of `key` (or `None`) proven against a finalized header
    /// of the trusted chain, with that header.
    pub async fn state_value(
        &self,
        key: &umbra_types::state_keys::StateKey,
    ) -> Result<(Option<Vec<u8>>, VerifiedHeader), SdkError> {
        let what = format!("{key:?}");
        let bad = |reason: String| SdkError::BadStateProof { what: what.clone(), reason };
        let resp: umbra_rpc::StateValueResponse =
            self.call(methods::STATE_GET_VALUE, rpc_params![hex::encode(umbra_types::encode(key))]).await?;
        let verified = self.verify_header(&resp.header).await?;
        let proof = hex::decode(resp.proof.trim_start_matches("0x")).map_err(|e| bad(format!("not hex: {e}")))?;
        let proven = self.light_client()?.verify_state(&verified, key, &proof).map_err(|e| bad(e.to_string()))?;
        let claimed = match &resp.value {
            Some(v) => Some(hex::decode(v.trim_start_matches("0x")).map_err(|e| bad(format!("not hex: {e}")))?),
            None => None,
        };
        if claimed != proven {
            return Err(bad("the value the node sent is not the proven one".into()));
        }
        Ok((proven, verified))
    }

    /// A worker's registry record, proven against a finalized header (`None`: never registered).
    pub async fn worker(
        &self,
        id: &umbra_types::WorkerId,
    ) -> Result<(Option<umbra_types::WorkerRecord>, VerifiedHeader), SdkError> {
        let key = umbra_types::state_keys::StateKey::Worker(*id);
        let (value, at) = self.state_value(&key).await?;
        let record = match value {
            Some(v) => Some(umbra_types::decode(&v, 1 << 20).map_err(|e| SdkError::BadStateProof {
                what: format!("worker {}", hex::encode(id)),
                reason: format!("the proven record does not decode: {e}"),
            })?),
            None => None,
        };
        Ok((record, at))
    }

    /// `chain_getBlock`, verified: the header must be final on the trusted chain (its finality
    /// certificate checked by the light client, a later certified block it is an ancestor of, or
    /// the pinned genesis), and the transactions must match its `tx_root`.
    pub async fn verified_block(&self, id: Option<BlockId>) -> Result<VerifiedBlock, SdkError> {
        let response = self.block(id).await?;
        check_block(&response)?;
        let verified = self.verify_response(&response).await?;
        Ok(VerifiedBlock { finality: verified.finality().clone(), response })
    }

    /// Verifies `header` (named by the node in some answer) against the trusted chain: the
    /// node's block at that height must be exactly this header, and final.
    pub async fn verify_header(&self, header: &Header) -> Result<VerifiedHeader, SdkError> {
        self.pin().await?;
        if let Some(v) = self.light_client()?.trusted(header) {
            return Ok(v);
        }
        let response = self.block(Some(BlockId::Height(header.height))).await?;
        check_block(&response)?;
        if response.block.header != *header {
            return Err(SdkError::BadResponse {
                method: methods::CHAIN_GET_BLOCK,
                reason: format!(
                    "the node's block {} is {}, not the header {} it answered with",
                    header.height,
                    response.hash,
                    header.hash()
                ),
            });
        }
        self.verify_response(&response).await
    }

    /// A copy of the light client, pinning the chain first if needed.
    pub async fn light(&self) -> Result<LightClient, SdkError> {
        self.pin().await?;
        self.light_client()
    }

    fn light_client(&self) -> Result<LightClient, SdkError> {
        self.lock_trust()
            .light
            .clone()
            .ok_or_else(|| SdkError::Unverified { height: 0, reason: "the chain is not pinned yet".into() })
    }

    /// Runs `f` on the shared light client (which must exist: call [`Client::pin`] first).
    fn with_light<R>(
        &self,
        height: u64,
        f: impl FnOnce(&mut LightClient) -> Result<R, umbra_light::LightError>,
    ) -> Result<R, SdkError> {
        let mut trust = self.lock_trust();
        let light = trust
            .light
            .as_mut()
            .ok_or_else(|| SdkError::Unverified { height, reason: "the chain is not pinned yet".into() })?;
        f(light).map_err(|source| SdkError::NotFinal { height, source })
    }

    /// Verifies the header of a block answer (already checked with [`check_block`]).
    async fn verify_response(&self, response: &BlockResponse) -> Result<VerifiedHeader, SdkError> {
        self.pin().await?;
        let header = &response.block.header;
        let light = self.light_client()?;
        if let Some(v) = light.trusted(header) {
            return Ok(v);
        }
        if header.height == 0 {
            let pinned = light.anchor().map(|a| a.hash()).unwrap_or_default();
            return Err(SdkError::Untrusted {
                chain_id: light.chain_id().into(),
                reason: format!("the node's genesis block is {}, but the pinned genesis is {pinned}", response.hash),
            });
        }
        self.follow_epochs(header.epoch).await?;
        if let Some(cert) = &response.finality_certificate {
            let bytes =
                decode_hex_certificate(cert).map_err(|source| SdkError::NotFinal { height: header.height, source })?;
            return self.with_light(header.height, |l| l.verify_finalized(header, &bytes));
        }
        // No certificate of its own: a block finalized along with a later one, or one whose
        // certificate the node lost (a node killed right after finalizing keeps the block but
        // not always its certificate). Walk forward to a certified descendant (waiting a little
        // for the next blocks at the head), verify it, then its parents back down to this block.
        let mut chain = vec![header.clone()];
        let deadline = Instant::now() + DESCENDANT_WAIT;
        while (chain.len() as u64) <= MAX_DESCENDANT_WALK {
            let height = header.height + chain.len() as u64;
            let next = match self.block(Some(BlockId::Height(height))).await {
                Ok(next) => next,
                Err(SdkError::Rpc(e)) if e.code == ErrorCode::NotFound && Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                Err(SdkError::Rpc(e)) if e.code == ErrorCode::NotFound => break,
                Err(e) => return Err(e),
            };
            check_block(&next)?;
            chain.push(next.block.header.clone());
            let Some(cert) = &next.finality_certificate else { continue };
            let top = &next.block.header;
            let bytes =
                decode_hex_certificate(cert).map_err(|source| SdkError::NotFinal { height: top.height, source })?;
            let mut verified = self.with_light(top.height, |l| l.verify_finalized(top, &bytes))?;
            let light = self.light_client()?;
            for parent in chain.iter().rev().skip(1) {
                verified = light
                    .verify_ancestor(&verified, parent)
                    .map_err(|source| SdkError::NotFinal { height: parent.height, source })?;
            }
            return Ok(verified);
        }
        Err(SdkError::Unverified {
            height: header.height,
            reason: format!(
                "the node serves no finality certificate for it, nor for any of the {} blocks after it (waited up to {}s for more)",
                chain.len().saturating_sub(1),
                DESCENDANT_WAIT.as_secs()
            ),
        })
    }

    /// Brings the light client to `target`'s committee: verifies the last block of each epoch
    /// from the one it knows up to `target - 1` (each carries the next committee, certified by the
    /// committee before it).
    async fn follow_epochs(&self, target: u64) -> Result<(), SdkError> {
        let mut epoch_length = None;
        loop {
            let light = self.light_client()?;
            let known = match light.next_committee() {
                Some((next, _)) => next,
                None => light.epoch(),
            };
            if known >= target {
                return Ok(());
            }
            let length = match epoch_length {
                Some(l) => l,
                None => {
                    let l = self.chain_info().await?.epoch_length.max(1);
                    epoch_length = Some(l);
                    l
                }
            };
            let boundary = known.saturating_add(1).saturating_mul(length).saturating_sub(1);
            let response = self.block(Some(BlockId::Height(boundary))).await?;
            check_block(&response)?;
            let header = &response.block.header;
            let Some(cert) = &response.finality_certificate else {
                return Err(SdkError::Unverified {
                    height: boundary,
                    reason: format!("the node serves no finality certificate for epoch {known}'s last block"),
                });
            };
            let bytes =
                decode_hex_certificate(cert).map_err(|source| SdkError::NotFinal { height: boundary, source })?;
            self.with_light(boundary, |l| l.verify_finalized(header, &bytes))?;
        }
    }

    /// Pins the chain on first contact: the node's genesis block must hash to the genesis hash
    /// it reports, and (with a trust store or an explicit genesis) match what is trusted.
    async fn pin(&self) -> Result<(), SdkError> {
        let (store, required) = {
            let trust = self.lock_trust();
            if trust.light.is_some() {
                return Ok(());
            }
            (trust.store.clone(), trust.genesis)
        };
        let info = self.chain_info().await?;
        trust::check_chain_id(&info.chain_id)
            .map_err(|reason| SdkError::BadResponse { method: methods::CHAIN_INFO, reason })?;
        let genesis = self.block(Some(BlockId::Height(0))).await?;
        let header = &genesis.block.header;
        let hash = header.hash();
        let bad_genesis = |reason: String| SdkError::BadResponse { method: methods::CHAIN_GET_BLOCK, reason };
        if hash != info.genesis_hash {
            return Err(bad_genesis(format!(
                "its genesis block hashes to {hash}, but it reports genesis {}",
                info.genesis_hash
            )));
        }
        let light = LightClient::from_genesis_header(&info.chain_id, header)
            .map_err(|e| bad_genesis(format!("its genesis block cannot start a light client: {e}")))?;
        let chain_id = info.chain_id.clone();
        if let Some(required) = required
            && required != hash
        {
            return Err(SdkError::Untrusted {
                chain_id,
                reason: format!("the node serves genesis {hash}, but genesis {required} is required"),
            });
        }
        if let Some(dir) = store {
            let pin = TrustPin::new(&chain_id, hash, light.committee());
            match trust::load(&dir, &chain_id)? {
                Some(old) if old == pin => {}
                Some(old) if required.is_none() => {
                    let path = trust::pin_path(&dir, &chain_id);
                    let what = if old.genesis_hash != hash {
                        format!("genesis {hash}, but {} pins genesis {}", path.display(), old.genesis_hash)
                    } else {
                        format!(
                            "a genesis committee of {} that differs from the one pinned in {}",
                            pin.committee.len(),
                            path.display()
                        )
                    };
                    return Err(SdkError::Untrusted {
                        chain_id,
                        reason: format!(
                            "the node serves {what} (trusted on first use); if the chain was really reset, trust the new genesis explicitly (--trust-genesis {hash}) or delete that file"
                        ),
                    });
                }
                _ => {
                    trust::save(&dir, &pin)?;
                }
            }
        }
        let mut trust = self.lock_trust();
        if trust.light.is_none() {
            trust.light = Some(light);
        }
        Ok(())
    }

    /// Polls `tx_get` until the transaction is in a finalized block, for at most `timeout`.
    ///
    /// A transaction the node does not know (yet) is waited for too, since a node may answer
    /// before its mempool has it; the [`SdkError::Timeout`] then says so.
    pub async fn wait_for_tx(&self, hash: Hash, timeout: Duration) -> Result<TxResponse, SdkError> {
        let start = Instant::now();
        loop {
            let last_seen = match self.tx(hash).await {
                Ok(r) if r.status == TxStatus::Finalized => {
                    if r.receipt.is_none() {
                        return Err(SdkError::BadResponse {
                            method: methods::TX_GET,
                            reason: format!("transaction {hash} is finalized but has no receipt"),
                        });
                    }
                    return Ok(r);
                }
                Ok(_) => "still pending",
                Err(SdkError::Rpc(e)) if e.code == ErrorCode::NotFound => "unknown to the node",
                Err(e) => return Err(e),
            };
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(SdkError::Timeout { hash, waited, last_seen: last_seen.into() });
            }
            tokio::time::sleep(POLL_INTERVAL.min(timeout - waited)).await;
        }
    }

    /// Subscribes to finalized headers over a WebSocket to the same host and port
    /// (`http` becomes `ws`, `https` becomes `wss`).
    pub async fn subscribe_heads(&self) -> Result<HeadSubscription, SdkError> {
        let ws_url = ws_url(&self.url);
        let ws = WsClientBuilder::default()
            .build(&ws_url)
            .await
            .map_err(|e| map_client_error(&ws_url, methods::SUBSCRIBE_HEADS, e))?;
        let sub = ws
            .subscribe(methods::SUBSCRIBE_HEADS, rpc_params![], methods::UNSUBSCRIBE_HEADS)
            .await
            .map_err(|e| map_client_error(&ws_url, methods::SUBSCRIBE_HEADS, e))?;
        Ok(HeadSubscription { _ws: ws, sub })
    }
}

/// Checks a block answer is self-consistent: the hash it names is its header's, and its
/// transactions are the ones the header's `tx_root` commits to.
fn check_block(resp: &BlockResponse) -> Result<(), SdkError> {
    let bad = |reason: String| SdkError::BadResponse { method: methods::CHAIN_GET_BLOCK, reason };
    let hash = resp.block.hash();
    if resp.hash != hash {
        return Err(bad(format!("it names block {} but the header hashes to {hash}", resp.hash)));
    }
    let hashes: Vec<Hash> = resp.block.txs.iter().map(|t| t.hash()).collect();
    if umbra_crypto::merkle_root(&hashes) != resp.block.header.tx_root {
        return Err(bad(format!("the transactions of block {} do not match its tx_root", resp.block.header.height)));
    }
    Ok(())
}

fn decode_hex_certificate(cert: &str) -> Result<Vec<u8>, umbra_light::LightError> {
    hex::decode(cert.strip_prefix("0x").unwrap_or(cert))
        .map_err(|e| umbra_light::LightError::MalformedCertificate(format!("not hex: {e}")))
}

/// A stream of finalized headers from [`Client::subscribe_heads`]. Dropping it unsubscribes.
pub struct HeadSubscription {
    // Kept alive for the subscription: dropping the client closes the connection.
    _ws: WsClient,
    sub: Subscription<Header>,
}

impl std::fmt::Debug for HeadSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadSubscription").finish_non_exhaustive()
    }
}

impl HeadSubscription {
    /// The next finalized header; `None` once the node closes the subscription.
    pub async fn next(&mut self) -> Option<Result<Header, SdkError>> {
        let item = self.sub.next().await?;
        Some(item.map_err(|e| SdkError::BadResponse { method: methods::HEADS_NOTIFICATION, reason: e.to_string() }))
    }
}

fn ws_url(http_url: &str) -> String {
    if let Some(rest) = http_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_url.to_string()
    }
}

/// Maps a JSON-RPC error object's code and message to the SDK's error.
pub(crate) fn from_error_object(code: i32, message: &str) -> SdkError {
    match ErrorCode::from_code(code) {
        Some(code) => SdkError::Rpc(RpcError::new(code, one_line(message))),
        None => SdkError::UnexpectedRpcError { code, message: one_line(message) },
    }
}

fn map_client_error(url: &str, method: &'static str, e: ClientError) -> SdkError {
    let unreachable = |reason: String| SdkError::Unreachable { url: url.to_string(), reason };
    match e {
        ClientError::Call(obj) => from_error_object(obj.code(), obj.message()),
        ClientError::ParseError(e) => SdkError::BadResponse { method, reason: e.to_string() },
        ClientError::RequestTimeout => unreachable("the request timed out".into()),
        ClientError::Transport(e) => unreachable(innermost(e.as_ref())),
        ClientError::RestartNeeded(e) => unreachable(innermost(e.as_ref())),
        other => SdkError::BadResponse { method, reason: innermost(&other) },
    }
}

/// The deepest cause of an error: transport errors wrap the useful part ("Connection refused")
/// under several generic layers.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contract_error_code_maps_to_its_typed_code() {
        let e = from_error_object(1007, "fee too low");
        assert_eq!(e.rpc_code(), Some(ErrorCode::FeeTooLow));
        assert_eq!(e.to_string(), "fee too low (code 1007)");
    }

    #[test]
    fn an_unknown_error_code_is_kept_with_its_number() {
        let e = from_error_object(-32601, "Method not found");
        assert_eq!(e, SdkError::UnexpectedRpcError { code: -32601, message: "Method not found".into() });
    }

    #[test]
    fn a_multi_line_node_message_becomes_one_line() {
        let e = from_error_object(3002, "boom\n  at line 2");
        assert_eq!(e.to_string(), "boom at line 2 (code 3002)");
    }

    #[test]
    fn a_url_without_an_http_scheme_is_refused() {
        assert!(matches!(Client::new("127.0.0.1:9944"), Err(SdkError::InvalidUrl { .. })));
        assert!(matches!(Client::new("ftp://x"), Err(SdkError::InvalidUrl { .. })));
    }

    #[test]
    fn the_websocket_url_keeps_host_port_and_tls() {
        assert_eq!(ws_url("http://127.0.0.1:9944"), "ws://127.0.0.1:9944");
        assert_eq!(ws_url("https://node.example:443/rpc"), "wss://node.example:443/rpc");
    }

    #[tokio::test]
    async fn an_unreachable_node_gives_one_clear_line() {
        // A port just released on loopback: nothing listens there, so connecting is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}");
        let client = Client::with_timeout(url.clone(), Duration::from_secs(5)).expect("valid url");
        let err = client.health().await.expect_err("nothing listens there");
        assert!(matches!(err, SdkError::Unreachable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("cannot reach the node at {url}: ")), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
