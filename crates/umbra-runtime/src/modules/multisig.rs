//! `multisig`: accounts that `threshold` of their members control together (types and rules in
//! `umbra_types::multisig`).
//!
//! This module only keeps the books: the multisig's record (members, threshold, operation counter, pending
//! numbers) under `StateKey::Multisig(address)` and each pending operation under `StateKey::MultisigOp`. When an
//! approval reaches the threshold it hands the inner call back as [`Step::Execute`]; the runtime then runs it
//! through its ordinary dispatch with the multisig address as the signer, inside the approving transaction's
//! checkpoint, so a failing inner call undoes the approval too (the operation stays pending and can be
//! approved again once the cause is fixed, or cancelled).
//!
//! Expired operations are dropped when the multisig next gets a proposal (and can be cancelled by any
//! member), so a multisig never holds more than `MAX_PENDING_OPS` records.

use crate::{Overlay, RuntimeError, StateRead};
use umbra_types::multisig::{
    MAX_OP_LIFETIME, MAX_PENDING_OPS, MultisigOp, MultisigRecord, OpId, call_hash, check_inner_call, check_members,
    multisig_address,
};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Call, TxError};

type Res<T> = Result<Result<T, TxError>, RuntimeError>;

fn pre(reason: impl Into<String>) -> TxError {
    TxError::MultisigPrecondition { reason: reason.into() }
}

/// What a proposal or approval leads to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Recorded; more approvals are needed.
    Pending,
    /// The threshold is reached: run `call` with `multisig` as its signer.
    Execute {
        /// The multisig's address.
        multisig: Address,
        /// The call.
        call: Box<Call>,
    },
}

/// The `multisig` module.
pub(crate) struct Multisig;

impl Multisig {
    /// A multisig's record, once used on chain.
    pub(crate) async fn record<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        address: &Address,
    ) -> Result<Option<MultisigRecord>, RuntimeError> {
        s.get(&StateKey::Multisig(*address), "multisig record").await
    }

    /// A pending operation.
    pub(crate) async fn op<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        multisig: &Address,
        op: OpId,
    ) -> Result<Option<MultisigOp>, RuntimeError> {
        s.get(&StateKey::MultisigOp { multisig: *multisig, op }, "multisig op").await
    }

    fn drop_op<S: StateRead>(&self, s: &mut Overlay<'_, S>, rec: &mut MultisigRecord, op: OpId) {
        s.put_raw(StateKey::MultisigOp { multisig: rec.address, op }.hash(), None);
        rec.pending.retain(|p| *p != op);
    }

    /// `Call::MultisigPropose`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn propose<S: StateRead>(
        &self,
        height: u64,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        members: &[Address],
        threshold: u16,
        call: &Call,
        expires_in: u64,
    ) -> Res<Step> {
        let members = match check_members(members, threshold) {
            Ok(m) => m,
            Err(why) => return Ok(Err(pre(why))),
        };
        let address = multisig_address(&members, threshold);
        if members.binary_search(signer).is_err() {
            return Ok(Err(TxError::NotMultisigMember { multisig: address, signer: *signer }));
        }
        if let Err(why) = check_inner_call(call) {
            return Ok(Err(pre(why)));
        }
        if !(1..=MAX_OP_LIFETIME).contains(&expires_in) {
            return Ok(Err(pre(format!("expires_in must be 1 to {MAX_OP_LIFETIME} blocks"))));
        }
        let mut rec = match self.record(s, &address).await? {
            Some(r) => r,
            None => MultisigRecord { address, members, threshold, next_op: 0, pending: Vec::new() },
        };
        if threshold == 1 {
            // Recorded (so the members are known on chain) and run at once.
            s.put(&StateKey::Multisig(address), &rec);
            return Ok(Ok(Step::Execute { multisig: address, call: Box::new(call.clone()) }));
        }
        for id in rec.pending.clone() {
            let expired = self.op(s, &address, id).await?.is_none_or(|o| o.expires_at < height);
            if expired {
                self.drop_op(s, &mut rec, id);
            }
        }
        if rec.pending.len() >= MAX_PENDING_OPS {
            return Ok(Err(pre(format!(
                "the multisig already has {MAX_PENDING_OPS} pending operations; approve or cancel some"
            ))));
        }
        let id = rec.next_op;
        let op = MultisigOp {
            id,
            call: call.clone(),
            call_hash: call_hash(call),
            proposer: *signer,
            approvals: vec![*signer],
            created_at: height,
            expires_at: height.saturating_add(expires_in),
        };
        rec.next_op += 1;
        rec.pending.push(id);
        s.put(&StateKey::MultisigOp { multisig: address, op: id }, &op);
        s.put(&StateKey::Multisig(address), &rec);
        tracing::info!(target: "multisig.propose", height, multisig = %address, op = id, call = call.kind(), "operation proposed");
        Ok(Ok(Step::Pending))
    }

    /// The record and pending operation a member's approval or cancel is about.
    async fn member_op<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        signer: &Address,
        multisig: &Address,
        id: OpId,
    ) -> Res<(MultisigRecord, MultisigOp)> {
        let unknown = TxError::UnknownMultisigOp { multisig: *multisig, op: id };
        let Some(rec) = self.record(s, multisig).await? else { return Ok(Err(unknown)) };
        if rec.members.binary_search(signer).is_err() {
            return Ok(Err(TxError::NotMultisigMember { multisig: *multisig, signer: *signer }));
        }
        match self.op(s, multisig, id).await? {
            Some(op) => Ok(Ok((rec, op))),
            None => Ok(Err(unknown)),
        }
    }

    /// `Call::MultisigApprove`.
    pub(crate) async fn approve<S: StateRead>(
        &self,
        height: u64,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        multisig: &Address,
        id: OpId,
    ) -> Res<Step> {
        let (mut rec, mut op) = match self.member_op(s, signer, multisig, id).await? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if op.expires_at < height {
            return Ok(Err(TxError::MultisigOpExpired { expired_at: op.expires_at }));
        }
        match op.approvals.binary_search(signer) {
            Ok(_) => return Ok(Err(TxError::AlreadyApproved)),
            Err(i) => op.approvals.insert(i, *signer),
        }
        tracing::info!(target: "multisig.approve", height, %multisig, op = id, approvals = op.approvals.len(), threshold = rec.threshold, "operation approved");
        if op.approvals.len() >= usize::from(rec.threshold) {
            self.drop_op(s, &mut rec, id);
            s.put(&StateKey::Multisig(*multisig), &rec);
            return Ok(Ok(Step::Execute { multisig: *multisig, call: Box::new(op.call) }));
        }
        s.put(&StateKey::MultisigOp { multisig: *multisig, op: id }, &op);
        Ok(Ok(Step::Pending))
    }

    /// `Call::MultisigCancel`: the proposer at any time, any member once expired.
    pub(crate) async fn cancel<S: StateRead>(
        &self,
        height: u64,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        multisig: &Address,
        id: OpId,
    ) -> Res<()> {
        let (mut rec, op) = match self.member_op(s, signer, multisig, id).await? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if op.proposer != *signer && op.expires_at >= height {
            return Ok(Err(pre("only the proposer may cancel an operation before it expires")));
        }
        self.drop_op(s, &mut rec, id);
        s.put(&StateKey::Multisig(*multisig), &rec);
        tracing::info!(target: "multisig.cancel", height, %multisig, op = id, "operation cancelled");
        Ok(Ok(()))
    }
}
