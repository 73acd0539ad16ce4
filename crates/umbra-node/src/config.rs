//! Node configuration: plain data with defaults and a `validate()`; files are read by the binary.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Another validator to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its consensus public key, hex.
    pub key: String,
    /// Where it listens for p2p connections.
    pub address: SocketAddr,
}

/// Everything a node process needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A name for logs and health output.
    pub name: String,
    /// Where the node keeps its state, blocks and journals.
    pub data_dir: PathBuf,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The validator key file (hex of the 32-byte ed25519 seed).
    pub key: PathBuf,
    /// p2p listen address.
    pub p2p_listen: SocketAddr,
    /// JSON-RPC (HTTP and WebSocket) listen address.
    pub rpc_listen: SocketAddr,
    /// The other validators (this node's own entry may be included; it is ignored).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// With an empty mempool, how long a leader waits after its parent's timestamp before proposing an
    /// empty block, in milliseconds [default: 200, about five blocks a second on an idle chain]. Set it to
    /// 0 to make blocks as fast as consensus allows (benchmarks that need a long chain quickly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_block_interval_ms: Option<u64>,
}

impl NodeConfig {
    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        for p in &self.peers {
            crate::service::parse_key_hex(&p.key).map_err(|e| format!("peer {}: {e}", p.address))?;
        }
        if self.p2p_listen == self.rpc_listen {
            return Err("p2p_listen and rpc_listen must differ".into());
        }
        Ok(())
    }
}
