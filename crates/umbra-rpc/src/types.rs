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
