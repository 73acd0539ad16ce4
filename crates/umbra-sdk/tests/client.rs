//! The SDK against a scripted JSON-RPC node on loopback: checks the wire shapes of every call
//! (parameters, hex encodings, error codes) without a real chain.

use jsonrpsee::server::{RpcModule, Server, ServerHandle, SubscriptionMessage};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use umbra_crypto::Keypair;
use umbra_rpc::{AccountResponse, BlockId, BlockResponse, ChainInfo, ErrorCode, Health, TxResponse, TxStatus, methods};
use umbra_sdk::{Client, SdkError};
use umbra_types::state_keys::{AccountRecord, StateKey};
use umbra_types::{
    Address, Block, FeeParams, Hash, Header, Receipt, SignedTransaction, TokenInfo, UNIT, decode, encode,
};

/// What the scripted node answers.
struct Node {
    info: ChainInfo,
    next_nonce: u64,
    submitted: Mutex<Vec<SignedTransaction>>,
    /// `tx_get` answers "pending" this many times before "finalized".
    pending_polls: AtomicU32,
    account: Mutex<Option<AccountResponse>>,
}

fn chain_info() -> ChainInfo {
    ChainInfo {
        chain_id: "umbra-mock".into(),
        genesis_hash: Hash([1; 32]),
        token: TokenInfo::default(),
        validators: vec![],
        tee_dev_enabled: true,
        fees: FeeParams { base: 1_000, per_byte: 10, transfer: 0, proposer_share_bps: 5_000 },
        max_tx_bytes: 65_536,
    }
}

fn header(height: u64, state_root: [u8; 32]) -> Header {
    Header {
        height,
        parent: Hash::ZERO,
        timestamp_ms: 1_000 * height,
        proposer: [0; 32],
        epoch: 0,
        tx_root: Hash::ZERO,
        state_root: Hash(state_root),
        messages_root: Hash::ZERO,
        next_committee: None,
    }
}

fn err(code: ErrorCode, msg: &str) -> ErrorObjectOwned {
    ErrorObject::owned(code.code(), msg.to_string(), None::<()>)
}

async fn serve(node: Node) -> (Client, ServerHandle) {
    let server = Server::builder().build("127.0.0.1:0").await.expect("binds");
    let addr = server.local_addr().expect("has an address");
    let mut m = RpcModule::new(node);
    m.register_method(methods::CHAIN_INFO, |_, n, _| Ok::<_, ErrorObjectOwned>(n.info.clone())).expect("registers");
    m.register_method(methods::MEMPOOL_NEXT_NONCE, |p, n, _| {
        let (_addr,): (Address,) = p.parse()?;
        Ok::<_, ErrorObjectOwned>(n.next_nonce)
    })
    .expect("registers");
    m.register_method(methods::TX_SUBMIT, |p, n, _| {
        let (hex_tx,): (String,) = p.parse()?;
        let bytes = hex::decode(&hex_tx).map_err(|e| err(ErrorCode::MalformedTransaction, &e.to_string()))?;
        let tx: SignedTransaction =
            decode(&bytes, 65_536).map_err(|e| err(ErrorCode::MalformedTransaction, &e.to_string()))?;
        let min = n.info.fees.min_fee(bytes.len(), &tx.tx.call);
        if tx.tx.fee < min {
            return Err(err(ErrorCode::FeeTooLow, &format!("fee {} below minimum {min}", tx.tx.fee)));
        }
        let hash = tx.hash();
        n.submitted.lock().expect("lock").push(tx);
        Ok(hash)
    })
    .expect("registers");
    m.register_method(methods::TX_GET, |p, n, _| {
        let (hash,): (Hash,) = p.parse()?;
        let submitted = n.submitted.lock().expect("lock");
        let tx = submitted.iter().find(|t| t.hash() == hash).ok_or_else(|| err(ErrorCode::NotFound, "unknown"))?;
        let pending = n.pending_polls.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)).is_ok();
        let (status, receipt) = if pending {
            (TxStatus::Pending, None)
        } else {
            let r = Receipt { tx_hash: hash, height: 9, index: 0, fee_paid: tx.tx.fee, error: None };
            (TxStatus::Finalized, Some(r))
        };
        Ok::<_, ErrorObjectOwned>(TxResponse { tx: tx.clone(), status, receipt })
    })
    .expect("registers");
    m.register_method(methods::STATE_GET_ACCOUNT, |p, n, _| {
        let (_addr, prove): (Address, bool) = p.parse()?;
        if !prove {
            return Err(err(ErrorCode::InvalidParams, "the SDK always asks for a proof"));
        }
        n.account.lock().expect("lock").clone().ok_or_else(|| err(ErrorCode::NotFound, "no account scripted"))
    })
    .expect("registers");
    m.register_method(methods::CHAIN_GET_BLOCK, |p, _, _| {
        let (id,): (Option<BlockId>,) = p.parse()?;
        let height = match id {
            None => 12,
            Some(BlockId::Height(h)) => h,
            Some(BlockId::Hash(_)) => return Err(err(ErrorCode::NotFound, "no such block")),
        };
        let block = Block { header: header(height, [0; 32]), txs: vec![] };
        Ok(BlockResponse { hash: block.hash(), block, finality_certificate: Some("abcd".into()), receipts: vec![] })
    })
    .expect("registers");
    m.register_method(methods::SYSTEM_HEALTH, |_, _, _| {
        Ok::<_, ErrorObjectOwned>(Health {
            name: "mock".into(),
            height: 12,
            since_last_block_ms: 5,
            mempool_size: 0,
            healthy: true,
        })
    })
    .expect("registers");
    m.register_subscription(
        methods::SUBSCRIBE_HEADS,
        methods::HEADS_NOTIFICATION,
        methods::UNSUBSCRIBE_HEADS,
        |_, pending, _, _| async move {
            let sink = pending.accept().await?;
            for h in 1..=2 {
                let raw = serde_json::value::to_raw_value(&header(h, [0; 32]))?;
                sink.send(SubscriptionMessage::from(raw)).await?;
            }
            Ok(())
        },
    )
    .expect("registers");
    let handle = server.start(m);
    (Client::new(format!("http://{addr}")).expect("valid url"), handle)
}

fn node() -> Node {
    Node {
        info: chain_info(),
        next_nonce: 5,
        submitted: Mutex::new(vec![]),
        pending_polls: AtomicU32::new(1),
        account: Mutex::new(None),
    }
}

/// A committed state holding `record` for `addr`, and the hex proof for `addr` against its root.
fn prove(addr: Address, record: AccountRecord) -> ([u8; 32], String) {
    use commonware_runtime::{Runner as _, deterministic};
    use umbra_state::{State, StateConfig};
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = State::open(ctx, &StateConfig::default()).await.expect("opens");
        let key = StateKey::Account(addr).hash();
        let changes = BTreeMap::from([(key, Some(encode(&record)))]);
        let pending = state.speculate(None, &changes).await.expect("speculates");
        let root = state.commit(&pending).await.expect("commits");
        let proof = state.prove(&key).await.expect("proves");
        (root, hex::encode(proof.to_bytes()))
    })
}

#[tokio::test]
async fn a_transfer_is_signed_for_the_chain_submitted_and_followed_to_finality() {
    let (client, _server) = serve(node()).await;
    let key = Keypair::from_seed([4; 32]);
    let to = Address([9; 32]);
    let hash = umbra_sdk::transfer(&client, &key, to, 3 * UNIT, None).await.expect("submits");
    let done = client.wait_for_tx(hash, Duration::from_secs(10)).await.expect("finalizes");
    assert_eq!(done.status, TxStatus::Finalized);
    let receipt = done.receipt.expect("has a receipt");
    assert_eq!((receipt.tx_hash, receipt.height), (hash, 9));
    let size = done.tx.to_bytes().len();
    let tx = done.tx.tx;
    assert_eq!((tx.chain_id.as_str(), tx.nonce, tx.signer), ("umbra-mock", 5, key.address()));
    assert_eq!(tx.fee, chain_info().fees.min_fee(size, &tx.call));
}

#[tokio::test]
async fn a_node_error_arrives_with_its_typed_code() {
    let (client, _server) = serve(node()).await;
    let err = client.tx(Hash([7; 32])).await.expect_err("unknown");
    assert_eq!(err.rpc_code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn waiting_for_a_transaction_the_node_never_saw_times_out_and_says_so() {
    let (client, _server) = serve(node()).await;
    let err = client.wait_for_tx(Hash([7; 32]), Duration::from_millis(600)).await.expect_err("times out");
    assert!(matches!(err, SdkError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("unknown to the node"), "{err}");
}

#[tokio::test]
async fn an_account_read_returns_the_proven_record() {
    let n = node();
    let addr = Address([3; 32]);
    let (root, proof) = prove(addr, AccountRecord { balance: 42, nonce: 2 });
    *n.account.lock().expect("lock") =
        Some(AccountResponse { address: addr, balance: 42, nonce: 2, header: header(12, root), proof: Some(proof) });
    let (client, _server) = serve(n).await;
    let acct = client.account(&addr).await.expect("verifies");
    assert_eq!((acct.balance, acct.nonce, acct.height, acct.exists), (42, 2, 12, true));
}

#[tokio::test]
async fn a_node_lying_about_a_balance_is_caught() {
    let n = node();
    let addr = Address([3; 32]);
    let (root, proof) = prove(addr, AccountRecord { balance: 42, nonce: 2 });
    *n.account.lock().expect("lock") = Some(AccountResponse {
        address: addr,
        balance: 1_000_000,
        nonce: 2,
        header: header(12, root),
        proof: Some(proof),
    });
    let (client, _server) = serve(n).await;
    let err = client.account(&addr).await.expect_err("lie");
    assert!(matches!(err, SdkError::ProofMismatch { .. }), "{err}");
}

#[tokio::test]
async fn blocks_are_asked_for_by_height_or_as_the_latest() {
    let (client, _server) = serve(node()).await;
    assert_eq!(client.block(None).await.expect("latest").block.header.height, 12);
    assert_eq!(client.block(Some(BlockId::Height(3))).await.expect("by height").block.header.height, 3);
    let err = client.block(Some(BlockId::Hash(Hash([1; 32])))).await.expect_err("unknown");
    assert_eq!(err.rpc_code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn finalized_heads_arrive_over_a_websocket_to_the_same_port() {
    let (client, _server) = serve(node()).await;
    let mut heads = client.subscribe_heads().await.expect("subscribes");
    let first = heads.next().await.expect("one").expect("decodes");
    let second = heads.next().await.expect("two").expect("decodes");
    assert_eq!((first.height, second.height), (1, 2));
}

#[tokio::test]
async fn health_and_chain_info_are_read() {
    let (client, _server) = serve(node()).await;
    assert!(client.health().await.expect("health").healthy);
    assert_eq!(client.chain_info().await.expect("info").chain_id, "umbra-mock");
}
