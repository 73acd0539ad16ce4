//! Multisig accounts and governance ownership from the client side: the derived address, the proven record and
//! pending operations of a multisig, and what an owner address stands for.

use crate::{Client, SdkError};
use jsonrpsee::rpc_params;
use umbra_types::multisig::{MultisigOp, MultisigRecord};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, decode};

pub use umbra_types::governance::governance_owner;
pub use umbra_types::multisig::multisig_address;

fn err(what: &str, e: impl std::fmt::Display) -> SdkError {
    SdkError::BadStateProof { what: what.to_string(), reason: format!("the proven value does not decode: {e}") }
}

/// What kind of owner an address is, as far as the chain shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// The well-known governance owner: only enacted proposals act for it.
    Governance,
    /// A multisig the chain has seen (its first proposal recorded its members and threshold).
    Multisig(MultisigRecord),
    /// An account (or a multisig that has not been used on chain yet: its address alone does not say).
    Account,
}

impl Client {
    /// A multisig's record (members, threshold, pending operation numbers), proven against a finalized header;
    /// `None` until its first proposal.
    pub async fn multisig(&self, address: &Address) -> Result<Option<MultisigRecord>, SdkError> {
        let (value, _) = self.state_value(&StateKey::Multisig(*address)).await?;
        value.map(|v| decode(&v, 1 << 20).map_err(|e| err("multisig record", e))).transpose()
    }

    /// One pending operation of a multisig, proven (`None`: executed, cancelled, dropped or never proposed).
    pub async fn multisig_op(&self, address: &Address, op: u64) -> Result<Option<MultisigOp>, SdkError> {
        let (value, _) = self.state_value(&StateKey::MultisigOp { multisig: *address, op }).await?;
        value.map(|v| decode(&v, 1 << 22).map_err(|e| err("multisig operation", e))).transpose()
    }

    /// `multisig_pending`: a multisig's record, balance and pending operations as the node reports them
    /// (unproven; [`Client::multisig`] and [`Client::multisig_op`] prove each value).
    pub async fn multisig_pending(&self, address: &Address) -> Result<umbra_rpc::MultisigInfo, SdkError> {
        self.call(umbra_rpc::methods::MULTISIG_PENDING, rpc_params![address]).await
    }

    /// What kind of owner `owner` is: governance, a multisig known on chain (proven), or an account.
    pub async fn owner_kind(&self, owner: &Address) -> Result<OwnerKind, SdkError> {
        if *owner == governance_owner() {
            return Ok(OwnerKind::Governance);
        }
        Ok(match self.multisig(owner).await? {
            Some(r) => OwnerKind::Multisig(r),
            None => OwnerKind::Account,
        })
    }
}
