//! The JSON-RPC server (HTTP and WebSocket on one port), a thin layer over [`Node`].

use crate::node::Node;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use jsonrpsee::server::{RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use std::net::SocketAddr;
use umbra_rpc::{ErrorCode, RpcError, methods};
use umbra_types::{Address, Hash};

fn to_rpc(e: RpcError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(e.code.code(), e.message, None::<()>)
}

fn bad_params(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(ErrorCode::InvalidParams.code(), msg.to_string(), None::<()>)
}

fn reg<T>(r: Result<T, jsonrpsee::core::RegisterMethodError>) -> Result<(), std::io::Error> {
    r.map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()))
}

fn one<T: serde::de::DeserializeOwned>(p: &Params<'_>, what: &str) -> Result<T, ErrorObjectOwned> {
    let mut seq = p.sequence();
    seq.next::<T>().map_err(|e| bad_params(format!("expected {what}: {}", e.message())))
}

/// Starts serving `node` on `addr`; returns the bound address and a handle that stops it when dropped
/// or stopped.
pub async fn serve<E>(node: Node<E>, addr: SocketAddr) -> Result<(SocketAddr, ServerHandle), std::io::Error>
where
    E: Clock + Storage + Metrics + Spawner + Send + Sync + 'static,
{
    let cfg = ServerConfig::builder().max_request_body_size(2 * 1024 * 1024).max_connections(1_000).build();
    let server = Server::builder().set_config(cfg).build(addr).await?;
    let bound = server.local_addr()?;
    let mut m = RpcModule::new(node);

    reg(m.register_method(methods::CHAIN_INFO, |_, node, _| {
        let g = node.genesis();
        Ok::<_, ErrorObjectOwned>(umbra_rpc::ChainInfo {
            chain_id: g.chain_id.clone(),
            genesis_hash: node.genesis_block().hash(),
            token: g.token.clone(),
            validators: g
                .validators
                .iter()
                .map(|v| umbra_rpc::ValidatorInfo { name: v.name.clone(), key: hex::encode(v.key) })
                .collect(),
            tee_dev_enabled: g.registry.dev_enabled(),
            fees: node.params().fees.clone(),
            max_tx_bytes: node.params().max_tx_bytes,
            epoch_length: node.params().epoch_length,
        })
    }))?;
    reg(m.register_method(methods::CHAIN_GET_HEAD, |_, node, _| {
        let (header, hash) = node.head();
        Ok::<_, ErrorObjectOwned>(umbra_rpc::HeadResponse { header, hash })
    }))?;
    reg(m.register_async_method(methods::CHAIN_GET_BLOCK, |p, node, _| async move {
        let mut seq = p.sequence();
        let id: Option<umbra_rpc::BlockId> = seq
            .optional_next::<Option<umbra_rpc::BlockId>>()
            .map_err(|e| bad_params(format!("expected a block height, a block hash or null: {}", e.message())))?
            .flatten();
        node.block(id).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::TX_SUBMIT, |p, node, _| async move {
        let hex_tx: String = one(&p, "the signed transaction as hex")?;
        let bytes = hex::decode(hex_tx.trim_start_matches("0x")).map_err(|e| {
            to_rpc(RpcError::new(ErrorCode::MalformedTransaction, format!("transaction is not hex: {e}")))
        })?;
        node.submit(&bytes).await.map_err(to_rpc)
    }))?;
    reg(m.register_method(methods::TX_GET, |p, node, _| {
        let hash: Hash = one(&p, "a transaction hash")?;
        node.transaction(&hash).map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::STATE_GET_ACCOUNT, |p, node, _| async move {
        let mut seq = p.sequence();
        let who: Address =
            seq.next().map_err(|e| bad_params(format!("expected an umbra1… address: {}", e.message())))?;
        let prove: Option<bool> = seq.optional_next().map_err(|e| bad_params(e.message()))?;
        node.account(&who, prove.unwrap_or(true)).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::STAKING_COMMITTEE, |_, node, _| async move {
        node.staking().await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::MEMPOOL_NEXT_NONCE, |p, node, _| async move {
        let who: Address = one(&p, "an umbra1… address")?;
        node.next_nonce(&who).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::WORKER_SYNC, |p, node, _| async move {
        let req: umbra_rpc::SyncRequest = one(&p, "a sync request {from, max_blocks, topics}")?;
        node.worker_sync(req).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::STATE_GET_VALUE, |p, node, _| async move {
        let key_hex: String = one(&p, "the hex of an encoded state key")?;
        let bytes = hex::decode(key_hex.trim_start_matches("0x"))
            .map_err(|e| bad_params(format!("state key is not hex: {e}")))?;
        let key: umbra_types::state_keys::StateKey =
            umbra_types::decode(&bytes, 4096).map_err(|e| bad_params(format!("not a state key: {e}")))?;
        node.state_value(&key).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::REGISTRY_STATUS, |_, node, _| async move {
        node.registry_status().await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::GOV_PROPOSALS, |_, node, _| async move {
        node.gov_proposals().await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::GOV_PROPOSAL, |p, node, _| async move {
        let id: u64 = one(&p, "a proposal number")?;
        node.gov_proposal(id).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::TREASURY_INFO, |_, node, _| async move {
        node.treasury_info().await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(
        methods::ECON_POOLS,
        |_, node, _| async move { node.econ_pools().await.map_err(to_rpc) },
    ))?;
    reg(m.register_async_method(methods::ECON_POOL, |p, node, _| async move {
        let id: u64 = one(&p, "a pool number")?;
        node.econ_pool(id).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::ECON_VAULT, |p, node, _| async move {
        let id: u64 = one(&p, "a vault number")?;
        node.econ_vault(id).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::ECON_WORKER, |p, node, _| async move {
        let id_hex: String = one(&p, "a worker id (64 hex digits)")?;
        let bytes = hex::decode(id_hex.trim().trim_start_matches("0x"))
            .map_err(|e| bad_params(format!("worker id is not hex: {e}")))?;
        let id: umbra_types::WorkerId =
            bytes.try_into().map_err(|_| bad_params("a worker id is 32 bytes (64 hex digits)"))?;
        node.econ_worker(&id).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::ECON_POSITION, |p, node, _| async move {
        let mut seq = p.sequence();
        let target: umbra_rpc::EconTarget = seq
            .next()
            .map_err(|e| bad_params(format!("expected {{\"pool\": id}} or {{\"vault\": id}}: {}", e.message())))?;
        let who: Address =
            seq.next().map_err(|e| bad_params(format!("expected an umbra1… address: {}", e.message())))?;
        node.econ_position(target, &who).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::ECON_BUDGET, |_, node, _| async move {
        node.econ_budget().await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::ECON_COMPUTE_STAKE, |p, node, _| async move {
        let id_hex: String = one(&p, "a contract id (64 hex digits)")?;
        let bytes = hex::decode(id_hex.trim().trim_start_matches("0x"))
            .map_err(|e| bad_params(format!("contract id is not hex: {e}")))?;
        let id: [u8; 32] = bytes.try_into().map_err(|_| bad_params("a contract id is 32 bytes (64 hex digits)"))?;
        node.econ_compute_stake(&id).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::ECON_CLUSTER_STAKES, |p, node, _| async move {
        let cluster: u32 = one(&p, "a cluster number")?;
        node.econ_cluster_stakes(cluster).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::MULTISIG_PENDING, |p, node, _| async move {
        let who: Address = one(&p, "a multisig's umbra1… address")?;
        node.multisig_pending(&who).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::AGENT_WALLET, |p, node, _| async move {
        node.agent_wallet(&agent_id(&p)?).await.map_err(to_rpc)
    }))?;
    reg(m.register_async_method(methods::AGENT_OUTPUTS, |p, node, _| async move {
        node.agent_outputs(&agent_id(&p)?).await.map_err(to_rpc)
    }))?;
    reg(m.register_method(methods::SYSTEM_HEALTH, |_, node, _| {
        let since = node.since_last_block_ms();
        Ok::<_, ErrorObjectOwned>(umbra_rpc::Health {
            name: node.name().to_string(),
            height: node.head().0.height,
            since_last_block_ms: since,
            mempool_size: node.mempool_len(),
            healthy: since < 10_000,
        })
    }))?;
    reg(m.register_subscription(
        methods::SUBSCRIBE_HEADS,
        methods::HEADS_NOTIFICATION,
        methods::UNSUBSCRIBE_HEADS,
        |_, pending, node, _| async move {
            let mut rx = node.subscribe_heads();
            let sink = pending.accept().await?;
            loop {
                match rx.recv().await {
                    Ok(header) => {
                        let msg = SubscriptionMessage::from(serde_json::value::to_raw_value(&header)?);
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            Ok(())
        },
    ))?;
    let handle = server.start(m);
    Ok((bound, handle))
}

/// The one parameter of the agent methods: an agent id as 64 hex digits.
fn agent_id(p: &Params<'_>) -> Result<[u8; 32], ErrorObjectOwned> {
    let id_hex: String = one(p, "an agent id (64 hex digits)")?;
    let bytes = hex::decode(id_hex.trim().trim_start_matches("0x"))
        .map_err(|e| bad_params(format!("agent id is not hex: {e}")))?;
    bytes.try_into().map_err(|_| bad_params("an agent id is 32 bytes (64 hex digits)"))
}
