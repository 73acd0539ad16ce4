//! An Umbra node: state, runtime, mempool, block index and JSON-RPC around the consensus engine.
//!
//! The pieces below are libraries (`umbra-state`, `umbra-runtime`, `umbra-consensus`); this crate
//! owns their composition: how a proposal is built and checked, when state is committed, what the
//! RPC serves. `umbra node` and `umbra dev` call [`run_node`].

mod config;
mod index;
mod mempool;
mod node;
mod rpc;
mod service;

pub use config::{NodeConfig, PeerConfig};
pub use index::IndexError;
pub use node::{Node, NodeError};
pub use rpc::serve;
pub use service::{
    Started, load_genesis, load_validator_key, max_block_bytes, parse_key_hex, run_node, validator_public,
};
