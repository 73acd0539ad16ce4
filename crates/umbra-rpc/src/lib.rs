//! The JSON-RPC 2.0 contract between Umbra nodes and their clients: method names, request and response shapes, and typed error codes.
//!
//! This crate holds no server or client code, only the data both sides agree on, so the node (which
//! serves it with `jsonrpsee`) and the SDK (which calls it) cannot drift apart, and clients do not
//! pull in server dependencies. Amounts are decimal strings in the smallest unit; hashes are `0x` hex;
//! binary blobs (transactions, proofs, certificates) are hex.

mod errors;
mod types;

pub use errors::{ErrorCode, RpcError};
pub use types::{
    AccountResponse, AgentOutputsInfo, AgentWalletInfo, BlockId, BlockResponse, ChainInfo, EconAllocation,
    EconBudgetInfo, EconClusterStakesInfo, EconComputeStakeInfo, EconContractStake, EconPoolInfo, EconPositionInfo,
    EconTarget, EconVaultInfo, EconWorkerInfo, GovProposalInfo, HeadResponse, Health, MAX_LISTED_PROPOSALS,
    MAX_SYNC_BLOCKS, MultisigInfo, ProvenMessage, RegistryStatus, StateValueResponse, SyncBlock, SyncRequest,
    SyncResponse, TreasuryInfo, TxResponse, TxStatus, ValidatorInfo,
};

/// Method names, `module_verb`.
pub mod methods {
    /// `chain_info() -> ChainInfo`
    pub const CHAIN_INFO: &str = "chain_info";
    /// `chain_getHead() -> HeadResponse`: the latest finalized header.
    pub const CHAIN_GET_HEAD: &str = "chain_getHead";
    /// `chain_getBlock(id: BlockId | null) -> BlockResponse`: a block with its finality certificate (`null`: latest).
    pub const CHAIN_GET_BLOCK: &str = "chain_getBlock";
    /// `tx_submit(tx_hex: String) -> Hash`: admit a signed transaction to the mempool.
    pub const TX_SUBMIT: &str = "tx_submit";
    /// `tx_get(hash: Hash) -> TxResponse`: a transaction and, once included, its receipt.
    pub const TX_GET: &str = "tx_get";
    /// `state_getAccount(address: Address, prove: bool) -> AccountResponse`.
    pub const STATE_GET_ACCOUNT: &str = "state_getAccount";
    /// `mempool_nextNonce(address: Address) -> u64`: the nonce a new transaction from `address`
    /// should carry, counting its transactions still pending in the mempool.
    pub const MEMPOOL_NEXT_NONCE: &str = "mempool_nextNonce";
    /// `staking_committee() -> object`: `epoch`, `epoch_length`, `next_epoch_at`, `committee` (hex
    /// keys), `next_committee` (once chosen in the epoch's last block), `candidates`, and whether
    /// this node is `voting`.
    pub const STAKING_COMMITTEE: &str = "staking_committee";
    /// `worker_sync(request: SyncRequest) -> SyncResponse`: finalized headers with sparse certificates and the
    /// proven messages of the requested topics: what a worker's host fetches and its TEE part verifies.
    pub const WORKER_SYNC: &str = "worker_sync";
    /// `state_getValue(key_hex: String) -> StateValueResponse`: one value of the authenticated state (the key
    /// is the hex of the canonical encoding of a `StateKey`) with its proof at the latest finalized block.
    pub const STATE_GET_VALUE: &str = "state_getValue";
    /// `registry_status() -> RegistryStatus`: policy, gatekeepers and key epochs, clusters and workers, for
    /// display (unproven; a client that needs proof reads single values with `state_getValue`).
    pub const REGISTRY_STATUS: &str = "registry_status";
    /// `gov_proposals() -> Vec<GovProposalInfo>`: the newest proposals (at most
    /// [`crate::MAX_LISTED_PROPOSALS`]), newest first, each with its tally so far.
    pub const GOV_PROPOSALS: &str = "gov_proposals";
    /// `gov_proposal(id: u64) -> GovProposalInfo`: one proposal with its tally so far (2001 if unknown).
    pub const GOV_PROPOSAL: &str = "gov_proposal";
    /// `treasury_info() -> TreasuryInfo`: the treasury's account, balance and spend history.
    pub const TREASURY_INFO: &str = "treasury_info";
    /// `econ_pools() -> Vec<EconPoolInfo>`: every stake pool with its value, shares, share price, workers
    /// and withdrawal queue, by number.
    pub const ECON_POOLS: &str = "econ_pools";
    /// `econ_pool(id: u64) -> EconPoolInfo`: one stake pool (2001 if unknown).
    pub const ECON_POOL: &str = "econ_pool";
    /// `econ_vault(id: u64) -> EconVaultInfo`: one vault with its value and pool allocations (2001 if unknown).
    pub const ECON_VAULT: &str = "econ_vault";
    /// `econ_worker(id_hex: String) -> EconWorkerInfo`: a worker's pool, benchmark, session (stake, V, P,
    /// responsive, pending heartbeat) and heartbeat counts.
    pub const ECON_WORKER: &str = "econ_worker";
    /// `econ_position(target: EconTarget, account: Address) -> EconPositionInfo`: one account's shares of
    /// a pool (`{"pool": id}`) or vault (`{"vault": id}`) and their value.
    pub const ECON_POSITION: &str = "econ_position";
    /// `econ_budget() -> EconBudgetInfo`: the current per-block rewards budget and what is left of the reserve.
    pub const ECON_BUDGET: &str = "econ_budget";
    /// `econ_compute_stake(contract_hex: String) -> EconComputeStakeInfo`: compute stake on one contract
    /// (stake-to-compute), its stakers, and stake of it being paid back.
    pub const ECON_COMPUTE_STAKE: &str = "econ_compute_stake";
    /// `econ_cluster_stakes(cluster: u32) -> EconClusterStakesInfo`: every contract with compute stake on a
    /// cluster and its stake, with the free quota's weight (what a worker's fair queue weighs queries by).
    pub const ECON_CLUSTER_STAKES: &str = "econ_cluster_stakes";
    /// `agent_wallet(id_hex: String) -> AgentWalletInfo`: an agent's account, balance, spend cap, spending of
    /// the rolling day and Ethereum address per key epoch (unproven; the SDK reads the same values with proofs).
    pub const AGENT_WALLET: &str = "agent_wallet";
    /// `agent_outputs(id_hex: String) -> AgentOutputsInfo`: an agent's latest attested outputs with its Ethereum
    /// addresses (unproven and unverified; check the signatures, as `umbra agent outputs` does).
    pub const AGENT_OUTPUTS: &str = "agent_outputs";
    /// `system_health() -> Health`.
    pub const SYSTEM_HEALTH: &str = "system_health";
    /// Subscription: `chain_subscribeFinalizedHeads` yields a `Header` per finalized block;
    /// notifications arrive as `chain_finalizedHead`; unsubscribe with `chain_unsubscribeFinalizedHeads`.
    pub const SUBSCRIBE_HEADS: &str = "chain_subscribeFinalizedHeads";
    /// Notification method name of [`SUBSCRIBE_HEADS`].
    pub const HEADS_NOTIFICATION: &str = "chain_finalizedHead";
    /// Unsubscribe method of [`SUBSCRIBE_HEADS`].
    pub const UNSUBSCRIBE_HEADS: &str = "chain_unsubscribeFinalizedHeads";
    /// `multisig_pending(address: Address) -> MultisigInfo`: a multisig's members, threshold, balance and pending
    /// operations (unproven, for display; `state_getValue` of `StateKey::Multisig` / `MultisigOp` proves them).
    pub const MULTISIG_PENDING: &str = "multisig_pending";
}
