//! The JSON-RPC client: one typed method per RPC method of the contract in `umbra-rpc`.

use crate::account::{VerifiedAccount, verify_account};
use crate::error::SdkError;
use jsonrpsee::core::client::{ClientT, Error as ClientError, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};
use umbra_rpc::{
    AccountResponse, BlockId, BlockResponse, ChainInfo, ErrorCode, HeadResponse, Health, RpcError, TxResponse,
    TxStatus, methods,
};
use umbra_types::{Address, Hash, Header, SignedTransaction};

/// How long one request may take before the client gives up.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Client::wait_for_tx`] asks the node again.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A connection to one node's JSON-RPC endpoint over HTTP.
///
/// Every method maps node errors to [`SdkError::Rpc`] with the contract's [`ErrorCode`], and
/// network failures to [`SdkError::Unreachable`].
#[derive(Clone)]
pub struct Client {
    url: String,
    http: HttpClient,
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
        Ok(Client { url, http })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call<R: DeserializeOwned>(&self, method: &'static str, params: ArrayParams) -> Result<R, SdkError> {
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

    /// `state_getAccount` with a proof, checked against the state root of the header the node
    /// names: the balance and nonce returned are the proven ones (see [`verify_account`]).
    pub async fn account(&self, address: &Address) -> Result<VerifiedAccount, SdkError> {
        let resp: AccountResponse = self.call(methods::STATE_GET_ACCOUNT, rpc_params![address, true]).await?;
        verify_account(address, &resp)
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
