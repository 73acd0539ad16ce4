use serde::{Deserialize, Serialize};
use umbra_types::{Address, Amount, Block, Hash, Header, Receipt, SignedTransaction, TokenInfo};

/// One committee member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    /// Human name from genesis.
    pub name: String,
    /// Consensus key, hex.
    pub key: String,
}

/// `chain_info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// The chain id.
    pub chain_id: String,
    /// The genesis block's hash.
    pub genesis_hash: Hash,
    /// The native token.
    pub token: TokenInfo,
    /// The current committee.
    pub validators: Vec<ValidatorInfo>,
    /// Whether simulated (`dev`) attestation is accepted: never on a production chain.
    pub tee_dev_enabled: bool,
    /// The fee schedule, so clients can compute the minimum fee.
    pub fees: umbra_types::FeeParams,
    /// Largest accepted transaction.
    pub max_tx_bytes: u32,
    /// Blocks per consensus epoch: the last block of each epoch names the next committee, which a
    /// light client needs to follow committee changes.
    #[serde(default = "default_epoch_length")]
    pub epoch_length: u64,
}

fn default_epoch_length() -> u64 {
    u64::MAX
}

/// `chain_getHead`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadResponse {
    /// The latest finalized header.
    pub header: Header,
    /// Its hash.
    pub hash: Hash,
}

/// Which block `chain_getBlock` should return.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlockId {
    /// By height.
    Height(u64),
    /// By hash.
    Hash(Hash),
}

/// `chain_getBlock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    /// The block.
    pub block: Block,
    /// Its hash.
    pub hash: Hash,
    /// Hex of the encoded finality certificate (absent for genesis).
    pub finality_certificate: Option<String>,
    /// Receipts of its transactions, in order.
    pub receipts: Vec<Receipt>,
}

/// Where a transaction stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Waiting in the mempool.
    Pending,
    /// In a finalized block.
    Finalized,
}

/// `tx_get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxResponse {
    /// The transaction.
    pub tx: SignedTransaction,
    /// Pending or finalized.
    pub status: TxStatus,
    /// The receipt once finalized.
    pub receipt: Option<Receipt>,
}

/// `state_getAccount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResponse {
    /// The account.
    pub address: Address,
    /// Its balance.
    #[serde(with = "amount_str")]
    pub balance: Amount,
    /// Its next nonce.
    pub nonce: u64,
    /// The finalized header whose `state_root` the proof is against.
    pub header: Header,
    /// Hex of the state proof of the account record (inclusion) or of its absence (exclusion).
    pub proof: Option<String>,
}

/// `system_health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The node's name.
    pub name: String,
    /// Latest finalized height.
    pub height: u64,
    /// Milliseconds since the latest finalized block (by the node's clock).
    pub since_last_block_ms: u64,
    /// Transactions waiting.
    pub mempool_size: usize,
    /// Whether the node considers itself healthy (finalizing recently).
    pub healthy: bool,
}

mod amount_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `worker_sync` request: finalized blocks from `from`, with the messages of `topics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// First height wanted (at least 1).
    pub from: u64,
    /// Most blocks wanted; the node may return fewer (it caps a batch at [`MAX_SYNC_BLOCKS`]).
    pub max_blocks: u32,
    /// The topics whose messages to include.
    pub topics: Vec<umbra_types::Topic>,
}

/// Most blocks one `worker_sync` returns.
pub const MAX_SYNC_BLOCKS: u32 = 2_000;

/// A chain-to-worker message with its inclusion proof under its header's `messages_root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenMessage {
    /// The message.
    pub message: umbra_types::Message,
    /// Its audit path (leaf: [`umbra_types::Message::leaf_hash`]).
    pub proof: umbra_crypto::MerkleProof,
}

/// One block of a `worker_sync` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBlock {
    /// The finalized header.
    pub header: Header,
    /// Hex of its finality certificate: present for the last block of the answer and for the last block of
    /// every consensus epoch in it (which names the next committee); the others are verified through the
    /// parent hashes.
    pub certificate: Option<String>,
    /// The messages of the requested topics emitted by this block, in emission order.
    pub messages: Vec<ProvenMessage>,
}

/// `worker_sync` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Consecutive blocks from the requested height (empty if it is above the finalized head).
    pub blocks: Vec<SyncBlock>,
    /// The latest finalized height.
    pub head: u64,
}

/// `state_getValue` answer: one state value with its proof, at the latest finalized block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateValueResponse {
    /// The finalized header whose `state_root` the proof is against.
    pub header: Header,
    /// Hex of its finality certificate.
    pub certificate: Option<String>,
    /// Hex of the value, absent if the key holds none.
    pub value: Option<String>,
    /// Hex of the state proof (inclusion or exclusion).
    pub proof: String,
}

/// `registry_status` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStatus {
    /// The height this describes.
    pub height: u64,
    /// The attestation policy (allow-list included).
    pub policy: umbra_tee::Policy,
    /// Gatekeepers, key epoch, master public key, rotation.
    pub keys: umbra_types::registry::KeysRecord,
    /// Every cluster.
    pub clusters: Vec<umbra_types::registry::ClusterRecord>,
    /// Every registered worker (revoked ones included).
    pub workers: Vec<umbra_types::WorkerRecord>,
    /// Hashes of the collateral stored on chain, newest first.
    pub collateral: Vec<Hash>,
}

/// The most proposals `gov_proposals` lists (the newest); older ones are read one by one with `gov_proposal`.
pub const MAX_LISTED_PROPOSALS: u64 = 256;

/// `gov_proposal` answer, and each item of `gov_proposals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovProposalInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The proposal as stored.
    pub proposal: umbra_types::governance::Proposal,
    /// The tally so far (the final one once voting ended).
    pub tally: umbra_types::governance::Tally,
    /// Turnout the quorum needs, in the smallest unit (at the current issuance).
    #[serde(with = "amount_str")]
    pub quorum: Amount,
    /// Whether the proposal would pass if voting ended now (or did pass).
    pub passing: bool,
}

/// `treasury_info` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreasuryInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The treasury's account.
    pub address: Address,
    /// Its balance, in the smallest unit.
    #[serde(with = "amount_str")]
    pub balance: Amount,
    /// Payments made by enacted proposals, oldest first.
    pub spends: Vec<umbra_types::governance::SpendRecord>,
}

/// `econ_pool` answer, and each item of `econ_pools`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconPoolInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The pool as stored (owner, commission, workers in the order added, shares, free and locked
    /// tokens, the withdrawal queue, holders, rewards and heartbeat counts).
    pub pool: umbra_types::economics::PoolRecord,
    /// Its value, `free + locked`, in the smallest unit.
    #[serde(with = "amount_str")]
    pub value: Amount,
    /// The share price: what one whole share (`UNIT` shares) is worth now, in the smallest unit
    /// (`UNIT` while no shares exist, the price a first contribution gets).
    #[serde(with = "amount_str")]
    pub share_price: Amount,
}

/// One pool a vault holds shares in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconAllocation {
    /// The pool.
    pub pool: umbra_types::economics::PoolId,
    /// The vault's shares of it (queued ones included).
    #[serde(with = "amount_str")]
    pub shares: u128,
    /// What they are worth now.
    #[serde(with = "amount_str")]
    pub value: Amount,
}

/// `econ_vault` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconVaultInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The vault as stored.
    pub vault: umbra_types::economics::VaultRecord,
    /// Its value: free tokens plus the value of its pool shares.
    #[serde(with = "amount_str")]
    pub value: Amount,
    /// What one whole vault share (`UNIT` shares) is worth now (`UNIT` while no shares exist).
    #[serde(with = "amount_str")]
    pub share_price: Amount,
    /// Its pool shares, in first-allocation order.
    pub allocations: Vec<EconAllocation>,
}

/// `econ_worker` answer: what the chain knows of one worker's compute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconWorkerInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The worker id, hex.
    pub worker: String,
    /// Its pool, benchmark (`initial_score`), score in use P, session (stake, V, responsive, pending
    /// challenge, earnings), slashing and heartbeat counts.
    pub record: umbra_types::economics::WorkerEconRecord,
    /// Its current share weight `isqrt(V^2 + w P^2)` while computing and responsive (0 otherwise).
    #[serde(with = "amount_str")]
    pub share: u128,
    /// The least stake it may start computing with at its current score.
    #[serde(with = "amount_str")]
    pub min_stake: Amount,
}

/// Which holding `econ_position` asks about: `{"pool": id}` or `{"vault": id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EconTarget {
    /// A stake pool.
    Pool(umbra_types::economics::PoolId),
    /// A vault.
    Vault(umbra_types::economics::VaultId),
}

/// `econ_position` answer: one account's shares of a pool or vault and their value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconPositionInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The pool or vault.
    pub target: EconTarget,
    /// The holder.
    pub holder: Address,
    /// Shares held (queued ones included).
    #[serde(with = "amount_str")]
    pub shares: u128,
    /// Shares in queued withdrawals.
    #[serde(with = "amount_str")]
    pub queued: u128,
    /// What the shares are worth now.
    #[serde(with = "amount_str")]
    pub value: Amount,
}

/// `econ_budget` answer: the rewards budget as it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconBudgetInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The per-block budget the next block pays (after decays, before the reserve bounds it).
    #[serde(with = "amount_str")]
    pub budget: Amount,
    /// The part of it paid to the proposer's owner (`validator_reward_share_bps`).
    #[serde(with = "amount_str")]
    pub validator_part: Amount,
    /// The rest, shared by computing workers.
    #[serde(with = "amount_str")]
    pub compute_part: Amount,
    /// What is left of the rewards reserve.
    #[serde(with = "amount_str")]
    pub reserve_left: Amount,
    /// Every pool's and vault's tokens are held by this account.
    pub escrow: Address,
    /// Workers with a session (computing or cooling down), hex.
    pub sessions: Vec<String>,
}

/// `econ_compute_stake` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconComputeStakeInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The contract, hex.
    pub contract: String,
    /// Its cluster (`None` if nothing was ever staked on it).
    pub cluster: Option<u32>,
    /// Tokens staked on it now.
    #[serde(with = "amount_str")]
    pub total: Amount,
    /// Each staker's tokens.
    pub stakers: Vec<(Address, umbra_types::economics::AmountStr)>,
    /// Its stake on the way back to stakers.
    pub unstaking: Vec<umbra_types::economics::ComputeUnstake>,
}

/// One contract's compute stake in `econ_cluster_stakes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconContractStake {
    /// The contract, hex.
    pub contract: String,
    /// Its stake.
    #[serde(with = "amount_str")]
    pub stake: Amount,
}

/// `econ_cluster_stakes` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconClusterStakesInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The cluster.
    pub cluster: u32,
    /// Contracts with stake, by id ascending.
    pub contracts: Vec<EconContractStake>,
    /// The weight a contract without stake gets (`params.economics.free_quota_stake`).
    #[serde(with = "amount_str")]
    pub free_quota_stake: Amount,
}

/// `multisig_pending` answer: a multisig's record and pending operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultisigInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The multisig's address.
    pub address: Address,
    /// Members, threshold and operation counter; `None` until the multisig's first proposal.
    pub record: Option<umbra_types::multisig::MultisigRecord>,
    /// Its balance, in the smallest unit.
    #[serde(with = "amount_str")]
    pub balance: Amount,
    /// Pending operations (expired ones included until dropped), by number.
    pub pending: Vec<umbra_types::multisig::MultisigOp>,
}

/// `agent_wallet` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentWalletInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The agent, hex.
    pub agent: String,
    /// Its Umbra account (the contract account).
    pub account: Address,
    /// The account's balance.
    #[serde(with = "amount_str")]
    pub balance: Amount,
    /// The owner's cap per rolling day (0: the agent may not spend).
    #[serde(with = "amount_str")]
    pub spend_cap_per_day: Amount,
    /// Spent in the rolling day ending at `height`.
    #[serde(with = "amount_str")]
    pub spent_today: Amount,
    /// Blocks in the rolling day.
    pub day_blocks: u64,
    /// The transfers of the rolling day, oldest first.
    pub transfers: Vec<umbra_types::agent_wallet::AgentTransferRecord>,
    /// The Ethereum address of each key epoch.
    pub eth_addresses: Vec<umbra_types::agent_wallet::AgentEthAddress>,
}

/// `agent_outputs` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOutputsInfo {
    /// The finalized height this describes.
    pub height: u64,
    /// The agent, hex.
    pub agent: String,
    /// Outputs posted in all (the next one's index).
    pub total: u64,
    /// The latest outputs, oldest first.
    pub outputs: Vec<umbra_types::agent_wallet::AttestedOutput>,
    /// The Ethereum address of each key epoch (what the outputs' EIP-191 signatures must recover to).
    pub eth_addresses: Vec<umbra_types::agent_wallet::AgentEthAddress>,
}
