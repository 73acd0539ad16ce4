//! The SDK against a scripted JSON-RPC node on loopback: checks the wire shapes of every call
//! (parameters, hex encodings, error codes) without a real chain.

use jsonrpsee::server::{RpcModule, Server, ServerHandle, SubscriptionMessage};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use umbra_crypto::Keypair;
use umbra_light::testing::TestCommittee;
use umbra_rpc::{AccountResponse, BlockId, BlockResponse, ChainInfo, ErrorCode, Health, TxResponse, TxStatus, methods};
use umbra_sdk::{Client, Finality, LightError, SdkError};
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
    /// The committee that signs every block's finality certificate.
    committee: TestCommittee,
    /// Blocks served instead of the generated ones, by height.
    blocks: Mutex<BTreeMap<u64, BlockResponse>>,
}

/// The mock chain's latest height.
const HEAD: u64 = 12;

/// The genesis header of a chain whose first committee is `committee`.
fn genesis(committee: &TestCommittee) -> Header {
    Header { next_committee: Some(committee.keys()), ..header(0, [5; 32]) }
}

/// A block answer for `header` with a certificate by `by` (none if `None`).
fn block_response(header: Header, by: Option<&TestCommittee>) -> BlockResponse {
    let finality_certificate = by.map(|c| hex::encode(c.certify_all("umbra-mock", &header, header.height + 100)));
    let block = Block { header, txs: vec![] };
    BlockResponse { hash: block.hash(), block, finality_certificate, receipts: vec![] }
}

fn chain_info() -> ChainInfo {
    ChainInfo {
        chain_id: "umbra-mock".into(),
        genesis_hash: Hash([1; 32]),
        token: TokenInfo::default(),
        validators: vec![],
        tee_dev_enabled: true,
        fees: FeeParams { base: 1_000, per_byte: 10, transfer: 0, proposer_share_bps: 5_000, ..FeeParams::default() },
        max_tx_bytes: 65_536,
        epoch_length: u64::MAX,
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
    m.register_method(methods::CHAIN_GET_BLOCK, |p, n, _| {
        let (id,): (Option<BlockId>,) = p.parse()?;
        let height = match id {
            None => HEAD,
            Some(BlockId::Height(h)) => h,
            Some(BlockId::Hash(_)) => return Err(err(ErrorCode::NotFound, "no such block")),
        };
        if height > HEAD {
            return Err(err(ErrorCode::NotFound, "no finalized block at that height yet"));
        }
        if let Some(b) = n.blocks.lock().expect("lock").get(&height) {
            return Ok(b.clone());
        }
        Ok(match height {
            0 => block_response(genesis(&n.committee), None),
            h => block_response(header(h, [0; 32]), Some(&n.committee)),
        })
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
    node_of(TestCommittee::new(1, 4))
}

/// A mock node of the chain whose genesis committee is `committee`.
fn node_of(committee: TestCommittee) -> Node {
    Node {
        info: ChainInfo { genesis_hash: genesis(&committee).hash(), ..chain_info() },
        next_nonce: 5,
        submitted: Mutex::new(vec![]),
        pending_polls: AtomicU32::new(1),
        account: Mutex::new(None),
        committee,
        blocks: Mutex::new(BTreeMap::new()),
    }
}

impl Node {
    /// Serves `header` at its height with a certificate by `by` (none if `None`).
    fn serve_block(&self, header: Header, by: Option<&TestCommittee>) {
        self.blocks.lock().expect("lock").insert(header.height, block_response(header, by));
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
    n.serve_block(header(12, root), Some(&n.committee.clone()));
    let (client, _server) = serve(n).await;
    let acct = client.account(&addr).await.expect("verifies");
    assert_eq!((acct.balance, acct.nonce, acct.height, acct.exists), (42, 2, 12, true));
    assert_eq!(acct.finality, Some(Finality::Certificate { epoch: 0, signers: 4, committee: 4 }));
}

#[tokio::test]
async fn an_account_read_on_a_block_with_a_forged_certificate_is_refused() {
    let n = node();
    let addr = Address([3; 32]);
    let (root, proof) = prove(addr, AccountRecord { balance: 42, nonce: 2 });
    *n.account.lock().expect("lock") =
        Some(AccountResponse { address: addr, balance: 42, nonce: 2, header: header(12, root), proof: Some(proof) });
    // Another signer set of the same size signs the node's block.
    n.serve_block(header(12, root), Some(&TestCommittee::new(2, 4)));
    let (client, _server) = serve(n).await;
    let err = client.account(&addr).await.expect_err("forged");
    assert!(matches!(err, SdkError::NotFinal { height: 12, source: LightError::InvalidCertificate { .. } }), "{err}");
    assert!(err.to_string().contains("forged finality certificate"), "{err}");
}

#[tokio::test]
async fn an_account_answer_naming_a_header_the_node_does_not_serve_is_refused() {
    let n = node();
    let addr = Address([3; 32]);
    let (root, proof) = prove(addr, AccountRecord { balance: 42, nonce: 2 });
    // The proof is against a root of an invented header; the node's real block 12 differs.
    *n.account.lock().expect("lock") =
        Some(AccountResponse { address: addr, balance: 42, nonce: 2, header: header(12, root), proof: Some(proof) });
    let (client, _server) = serve(n).await;
    let err = client.account(&addr).await.expect_err("invented header");
    assert!(matches!(err, SdkError::BadResponse { .. }), "{err}");
}

#[tokio::test]
async fn verified_blocks_say_how_they_were_verified() {
    let (client, _server) = serve(node()).await;
    let b = client.verified_block(Some(BlockId::Height(3))).await.expect("block 3");
    assert_eq!(b.finality, Finality::Certificate { epoch: 0, signers: 4, committee: 4 });
    assert_eq!(b.response.block.header.height, 3);
    let g = client.verified_block(Some(BlockId::Height(0))).await.expect("genesis");
    assert_eq!(g.finality, Finality::Trusted);
    assert_eq!(client.light().await.expect("pinned").tip().map(|t| t.height()), Some(3));
}

#[tokio::test]
async fn a_garbage_certificate_is_refused() {
    let n = node();
    let mut resp = block_response(header(4, [0; 32]), None);
    resp.finality_certificate = Some("abcd".into());
    n.blocks.lock().expect("lock").insert(4, resp);
    let (client, _server) = serve(n).await;
    let err = client.verified_block(Some(BlockId::Height(4))).await.expect_err("garbage");
    assert!(matches!(err, SdkError::NotFinal { source: LightError::MalformedCertificate(_), .. }), "{err}");
}

#[tokio::test]
async fn a_block_without_its_own_certificate_is_verified_through_a_later_certified_block() {
    let n = node();
    let b4 = header(4, [4; 32]);
    let b5 = Header { parent: b4.hash(), ..header(5, [5; 32]) };
    let b6 = Header { parent: b5.hash(), ..header(6, [6; 32]) };
    n.serve_block(b4, None);
    n.serve_block(b5, None);
    n.serve_block(b6, Some(&n.committee.clone()));
    let (client, _server) = serve(n).await;
    let b = client.verified_block(Some(BlockId::Height(4))).await.expect("through block 6");
    assert_eq!(b.finality, Finality::Ancestor { height: 6 });
}

#[tokio::test]
async fn a_block_that_no_certified_block_covers_is_unverified() {
    let n = node();
    // Block 11 has no certificate and block 12 does not build on it.
    n.serve_block(header(11, [1; 32]), None);
    let (client, _server) = serve(n).await;
    let err = client.verified_block(Some(BlockId::Height(11))).await.expect_err("uncovered");
    assert!(matches!(err, SdkError::NotFinal { height: 11, source: LightError::NotParent { .. } }), "{err}");
    let n = node();
    n.serve_block(header(12, [1; 32]), None);
    let (client, _server) = serve(n).await;
    let err = client.verified_block(None).await.expect_err("no certificate at the head");
    assert!(matches!(err, SdkError::Unverified { height: 12, .. }), "{err}");
}

#[tokio::test]
async fn the_chain_is_pinned_on_first_use_and_another_genesis_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = umbra_sdk::trust_dir(home.path());
    let (a, _sa) = serve(node_of(TestCommittee::new(1, 4))).await;
    let a = a.with_trust_store(&store);
    a.verified_block(None).await.expect("first contact pins the chain");
    let pin_file = store.join("umbra-mock.json");
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pin_file).expect("pin written")).expect("json");
    let genesis_a = genesis(&TestCommittee::new(1, 4)).hash();
    assert_eq!(pinned["genesis_hash"], genesis_a.to_string());
    assert_eq!(pinned["committee"].as_array().map(|c| c.len()), Some(4));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&pin_file).expect("exists").permissions().mode() & 0o777, 0o600);
    }

    // The same chain id with another genesis (another committee): refused, saying what to do.
    let (b, _sb) = serve(node_of(TestCommittee::new(2, 4))).await;
    let genesis_b = genesis(&TestCommittee::new(2, 4)).hash();
    let err = b.clone().with_trust_store(&store).verified_block(None).await.expect_err("another genesis");
    assert!(matches!(err, SdkError::Untrusted { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&genesis_b.to_string()) && msg.contains("--trust-genesis"), "{msg}");
    // An explicit anchor that the node does not match is refused too.
    let err = b.clone().with_trusted_genesis(genesis_a).verified_block(None).await.expect_err("wrong anchor");
    assert!(matches!(err, SdkError::Untrusted { .. }), "{err}");

    // Trusting the new genesis explicitly replaces the pin.
    let (b2, _sb2) = serve(node_of(TestCommittee::new(2, 4))).await;
    b2.with_trust_store(&store).with_trusted_genesis(genesis_b).verified_block(None).await.expect("explicit trust");
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pin_file).expect("pin")).expect("json");
    assert_eq!(pinned["genesis_hash"], genesis_b.to_string());
    // And the old chain is now the one refused.
    let (a2, _sa2) = serve(node_of(TestCommittee::new(1, 4))).await;
    assert!(matches!(a2.with_trust_store(&store).verified_block(None).await, Err(SdkError::Untrusted { .. })));
}

#[tokio::test]
async fn a_node_whose_genesis_block_does_not_match_its_genesis_hash_is_refused() {
    let mut n = node();
    n.info.genesis_hash = Hash([1; 32]);
    let (client, _server) = serve(n).await;
    let err = client.verified_block(Some(BlockId::Height(2))).await.expect_err("inconsistent genesis");
    assert!(matches!(err, SdkError::BadResponse { .. }), "{err}");
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
