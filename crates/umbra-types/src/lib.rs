//! Umbra's shared vocabulary: accounts, amounts, transactions, blocks, receipts, state keys and genesis, with one canonical binary codec.
//!
//! Every byte that is hashed, signed or stored on chain is produced by [`borsh`] from the types in this
//! crate, so two nodes that agree on a value agree on its bytes. JSON (serde) is used only at the edges
//! (genesis files, RPC), where amounts are written as decimal strings because they exceed JavaScript's
//! safe integers. This crate has no I/O and no cryptography beyond hashing, so clients can use it freely.

mod address;
pub mod agent_wallet;
pub mod agents;
mod amount;
mod block;
mod codec;
pub mod contracts;
pub mod economics;
mod genesis;
pub mod governance;
mod hash;
pub mod multisig;
mod receipt;
pub mod registry;
mod staking;
pub mod state_keys;
mod tx;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError, DECIMALS, MAX_SUPPLY, SYMBOL, UNIT, format_amount, parse_amount};
pub use block::{Block, Header, ValidatorKey};
pub use codec::{CodecError, decode, encode};
pub use economics::{EconomicsParams, PoolId, VaultId};
pub use genesis::{
    Allocation, FeeParams, Genesis, GenesisError, GenesisValidator, Params, RewardParams, StakingParams, TokenInfo,
};
pub use governance::{GovCall, GovernanceGenesis, GovernanceParams, ProposalId, VoteChoice};
pub use hash::{Hash, sha256};
pub use receipt::{Receipt, TxError};
pub use registry::{
    AdminCall, ClusterId, Egress, EgressPayload, KeyEpoch, Message, MessageBody, Origin, RegistryGenesis,
    RegistryParams, SignedEgress, Topic, WorkerId, WorkerRecord,
};
pub use staking::{
    Evidence, EvidenceVerifier, Offence, RejectAllEvidence, consensus_namespace, epoch_of, first_height_of,
    is_last_in_epoch,
};
pub use tx::{Call, SignedTransaction, TX_DOMAIN, Transaction};
