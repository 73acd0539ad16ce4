//! Running a node process: open the data directory, start RPC and consensus, run until stopped.

use crate::config::NodeConfig;
use crate::node::{Node, NodeError};
use commonware_codec::DecodeExt;
use commonware_cryptography::Signer;
use commonware_runtime::{Runner, Supervisor};
use std::path::Path;
use tracing::{info, warn};
use umbra_types::{Genesis, ValidatorKey};

/// Reads a 32-byte hex key.
pub fn parse_key_hex(s: &str) -> Result<[u8; 32], String> {
    let b = hex::decode(s.trim().trim_start_matches("0x")).map_err(|e| format!("not hex: {e}"))?;
    b.try_into().map_err(|b: Vec<u8>| format!("expected 32 bytes, got {}", b.len()))
}

/// The validator key (consensus signer) stored as a hex seed in `path`.
pub fn load_validator_key(path: &Path) -> Result<commonware_cryptography::ed25519::PrivateKey, NodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodeError::Config(format!("cannot read validator key {}: {e}", path.display())))?;
    let seed = parse_key_hex(&text).map_err(|e| NodeError::Config(format!("validator key {}: {e}", path.display())))?;
    commonware_cryptography::ed25519::PrivateKey::decode(commonware_codec::Copying(seed.as_slice()))
        .map_err(|e| NodeError::Config(format!("validator key {}: {e}", path.display())))
}

/// The public key of a validator key, as the chain writes it.
pub fn validator_public(key: &commonware_cryptography::ed25519::PrivateKey) -> ValidatorKey {
    umbra_consensus::validator_key(&key.public_key())
}

/// Reads and validates a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis, NodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodeError::Config(format!("cannot read genesis {}: {e}", path.display())))?;
    Genesis::from_json(&text).map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
}

/// What a started node reports.
#[derive(Clone, Debug)]
pub struct Started {
    /// The node's name.
    pub name: String,
    /// Where its RPC listens.
    pub rpc: std::net::SocketAddr,
    /// Height it resumed at.
    pub height: u64,
}

/// Runs a node until the process ends. `on_ready` is called once RPC and consensus are up.
pub fn run_node(cfg: NodeConfig, on_ready: impl FnOnce(Started) + Send + 'static) -> Result<(), NodeError> {
    cfg.validate().map_err(NodeError::Config)?;
    let genesis = load_genesis(&cfg.genesis)?;
    let signer = load_validator_key(&cfg.key)?;
    let me = validator_public(&signer);
    if !genesis.validators.iter().any(|v| v.key == me) {
        info!(target: "node.start", key = %hex::encode(me), "not in the genesis committee: following until a committee includes this key");
    }
    // Commonware's p2p listener panics if its port is taken: find out first and say so.
    std::net::TcpListener::bind(cfg.p2p_listen)
        .map_err(|e| NodeError::Io(format!("cannot listen for p2p on {}: {e}", cfg.p2p_listen)))?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| NodeError::Io(format!("cannot create data directory {}: {e}", cfg.data_dir.display())))?;
    check_genesis_marker(&cfg.data_dir, &genesis)?;
    let storage = cfg.data_dir.join("chain");
    let runner_cfg = commonware_runtime::tokio::Config::new()
        .with_storage_directory(storage)
        .with_worker_threads(2)
        .with_catch_panics(false);
    let runner = commonware_runtime::tokio::Runner::new(runner_cfg);
    runner.start(|ctx| async move {
        let node = Node::open(
            ctx.child("node"),
            cfg.name.clone(),
            genesis.clone(),
            &cfg.data_dir.join("index.redb"),
            &umbra_state::StateConfig::default(),
        )
        .await?;
        if let Some(ms) = cfg.empty_block_interval_ms {
            node.set_empty_block_interval(ms);
        }
        let (rpc, _rpc_handle) = crate::rpc::serve(node.clone(), cfg.rpc_listen)
            .await
            .map_err(|e| NodeError::Io(format!("cannot serve RPC on {}: {e}", cfg.rpc_listen)))?;
        let mut peers = Vec::new();
        for p in &cfg.peers {
            let k = parse_key_hex(&p.key).map_err(NodeError::Config)?;
            if k != me {
                peers.push((k, p.address));
            }
        }
        peers.push((me, cfg.p2p_listen));
        let consensus_cfg = umbra_consensus::ConsensusConfig {
            namespace: format!("umbra-{}", genesis.chain_id).into_bytes(),
            signer,
            committee: genesis.validators.iter().map(|v| v.key).collect(),
            genesis: node.genesis_block(),
            partition_prefix: "umbra".into(),
            max_block_bytes: max_block_bytes(&genesis),
            epoch_length: genesis.params.epoch_length,
            timeouts: Default::default(),
            gossip_rate_per_sec: 10_000,
        };
        let net = umbra_consensus::NetConfig { listen: cfg.p2p_listen, peers };
        let handle = umbra_consensus::start(ctx.child("consensus"), consensus_cfg, net, node.clone())
            .await
            .map_err(|e| NodeError::Consensus(e.to_string()))?;
        let seed = parse_key_hex(&std::fs::read_to_string(&cfg.key).map_err(|e| NodeError::Io(e.to_string()))?)
            .map_err(NodeError::Config)?;
        node.attach_consensus(handle, umbra_crypto::Keypair::from_seed(seed));
        let height = node.head().0.height;
        info!(target: "node.start", name = %cfg.name, %rpc, p2p = %cfg.p2p_listen, height, "node running");
        on_ready(Started { name: cfg.name.clone(), rpc, height });
        futures::future::pending::<()>().await;
        warn!("node stopped");
        Ok(())
    })
}

/// The largest encoded block the chain can produce with its parameters.
pub fn max_block_bytes(g: &Genesis) -> usize {
    // Header plus the most transactions of the largest size, with framing slack.
    (g.params.max_block_txs as usize)
        .saturating_mul(g.params.max_tx_bytes as usize + 16)
        .saturating_add(64 * 1024)
        .min(256 * 1024 * 1024)
}

/// Refuses to run a data directory created for another genesis.
fn check_genesis_marker(dir: &Path, g: &Genesis) -> Result<(), NodeError> {
    let marker = dir.join("genesis.sha256");
    let digest = umbra_types::sha256(&[&umbra_types::encode(g)]).to_string();
    match std::fs::read_to_string(&marker) {
        Ok(existing) if existing.trim() == digest => Ok(()),
        Ok(_) => Err(NodeError::Inconsistent(format!(
            "{} was created for a different genesis file; use another data directory or remove it to start over",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("chain").exists() {
                return Err(NodeError::Inconsistent(format!(
                    "{} has chain data but no genesis marker; remove it to start over",
                    dir.display()
                )));
            }
            std::fs::write(&marker, digest)
                .map_err(|e| NodeError::Io(format!("cannot write {}: {e}", marker.display())))
        }
        Err(e) => Err(NodeError::Io(format!("cannot read {}: {e}", marker.display()))),
    }
}
