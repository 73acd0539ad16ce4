//! `balances`: the native token: accounts, transfers, fees and the supply invariant.
//!
//! Tokens bonded or unbonding in `staking` are not in any balance; `TotalIssued` counts them too.
use crate::{AdmissionError, BlockEnv, Module, Overlay, RuntimeError, StateRead};
use umbra_types::state_keys::{AccountRecord, StateKey};
use umbra_types::{Address, Amount, Genesis, MAX_SUPPLY, SignedTransaction, TxError};

/// The treasury's account.
pub(crate) fn treasury() -> Address {
    Address::module("treasury")
}

/// The `balances` module.
pub(crate) struct Balances;

impl Balances {
    pub(crate) async fn account<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        a: &Address,
    ) -> Result<AccountRecord, RuntimeError> {
        Ok(s.get(&StateKey::Account(*a), "account").await?.unwrap_or_default())
    }

    pub(crate) fn set_account<S: StateRead>(&self, s: &mut Overlay<'_, S>, a: &Address, rec: &AccountRecord) {
        if *rec == AccountRecord::default() {
            s.put_raw(StateKey::Account(*a).hash(), None);
        } else {
            s.put(&StateKey::Account(*a), rec);
        }
    }

    /// The stateful admission check: exact nonce and a balance that covers the fee.
    pub(crate) async fn check<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        stx: &SignedTransaction,
    ) -> Result<(), AdmissionError> {
        let tx = &stx.tx;
        let acct = self.account(s, &tx.signer).await?;
        if tx.nonce < acct.nonce {
            return Err(AdmissionError::NonceUsed { account: tx.signer, expected: acct.nonce, got: tx.nonce });
        }
        if tx.nonce > acct.nonce {
            return Err(AdmissionError::NonceGap { account: tx.signer, expected: acct.nonce, got: tx.nonce });
        }
        if acct.balance < tx.fee {
            return Err(AdmissionError::CannotPayFee { account: tx.signer, fee: tx.fee, balance: acct.balance });
        }
        Ok(())
    }

    /// Charges the fee and advances the nonce (after [`Balances::check`] passed). The fee is held
    /// by the caller until [`Balances::distribute_fees`] at block end.
    pub(crate) async fn charge<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        stx: &SignedTransaction,
    ) -> Result<(), RuntimeError> {
        let tx = &stx.tx;
        let mut acct = self.account(s, &tx.signer).await?;
        acct.balance -= tx.fee;
        acct.nonce += 1;
        self.set_account(s, &tx.signer, &acct);
        Ok(())
    }

    /// Splits a block's fees between its proposer and the treasury.
    pub(crate) async fn distribute_fees<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        fees: Amount,
    ) -> Result<(), RuntimeError> {
        if fees == 0 {
            return Ok(());
        }
        let params: umbra_types::Params =
            s.get(&StateKey::SystemParams, "system params").await?.ok_or(RuntimeError::Missing("system params"))?;
        // Integer split, rounding down in the proposer's share; the remainder goes to the treasury,
        // so no unit is created or lost.
        let proposer_part = fees * Amount::from(params.fees.proposer_share_bps) / 10_000;
        self.credit(s, &env.proposer, proposer_part).await?;
        self.credit(s, &treasury(), fees - proposer_part).await?;
        Ok(())
    }

    /// Moves `amount` from `from` to `to`.
    pub(crate) async fn transfer<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        from: &Address,
        to: &Address,
        amount: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        if from == to {
            return Ok(Err(TxError::SelfTransfer));
        }
        let mut src = self.account(s, from).await?;
        if src.balance < amount {
            return Ok(Err(TxError::InsufficientBalance { needed: amount, available: src.balance }));
        }
        let mut dst = self.account(s, to).await?;
        let Some(new_dst) = dst.balance.checked_add(amount).filter(|b| *b <= MAX_SUPPLY) else {
            return Ok(Err(TxError::Overflow));
        };
        src.balance -= amount;
        dst.balance = new_dst;
        self.set_account(s, from, &src);
        self.set_account(s, to, &dst);
        Ok(Ok(()))
    }

    pub(crate) async fn credit<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        to: &Address,
        amount: Amount,
    ) -> Result<(), RuntimeError> {
        if amount == 0 {
            return Ok(());
        }
        let mut acct = self.account(s, to).await?;
        // Fees only move existing tokens, so a credit can never pass the maximum supply.
        acct.balance = acct.balance.saturating_add(amount);
        self.set_account(s, to, &acct);
        Ok(())
    }

    /// Destroys `amount` of `from`'s balance, lowering the tokens issued (a burned deposit).
    pub(crate) async fn burn<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        from: &Address,
        amount: Amount,
    ) -> Result<(), RuntimeError> {
        let mut acct = self.account(s, from).await?;
        acct.balance = acct.balance.checked_sub(amount).ok_or(RuntimeError::Corrupt("account"))?;
        let issued = self.total_issued(s).await?.checked_sub(amount).ok_or(RuntimeError::Corrupt("total issued"))?;
        self.set_account(s, from, &acct);
        s.put(&StateKey::TotalIssued, &issued);
        Ok(())
    }

    /// Total tokens issued.
    pub(crate) async fn total_issued<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Amount, RuntimeError> {
        Ok(s.get(&StateKey::TotalIssued, "total issued").await?.unwrap_or(0))
    }
}

impl Module for Balances {
    const NAME: &'static str = "balances";

    async fn genesis<S: StateRead>(&self, g: &Genesis, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        let mut total: Amount = 0;
        for a in &g.allocations {
            total = total
                .checked_add(a.amount)
                .filter(|t| *t <= MAX_SUPPLY)
                .ok_or_else(|| RuntimeError::Genesis("allocations exceed the maximum supply".into()))?;
            self.credit(s, &a.address, a.amount).await?;
        }
        s.put(&StateKey::TotalIssued, &total);
        if total.checked_add(g.params.rewards.reserve).is_none_or(|t| t > MAX_SUPPLY) {
            return Err(RuntimeError::Genesis("allocations plus the rewards reserve exceed the maximum supply".into()));
        }
        s.put(&StateKey::RewardsReserve, &g.params.rewards.reserve);
        Ok(())
    }
}

impl Balances {
    /// What is left of the rewards reserve.
    pub(crate) async fn rewards_reserve<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Amount, RuntimeError> {
        Ok(s.get(&StateKey::RewardsReserve, "rewards reserve").await?.unwrap_or(0))
    }

    /// Pays up to `amount` from the rewards reserve to `to`, issuing it (never beyond the reserve,
    /// so never beyond the maximum supply). Returns what was paid.
    pub(crate) async fn pay_reward<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        to: &Address,
        amount: Amount,
    ) -> Result<Amount, RuntimeError> {
        let reserve = self.rewards_reserve(s).await?;
        let paid = amount.min(reserve);
        if paid == 0 {
            return Ok(0);
        }
        let issued = self.total_issued(s).await?;
        self.credit(s, to, paid).await?;
        s.put(&StateKey::RewardsReserve, &(reserve - paid));
        s.put(&StateKey::TotalIssued, &(issued + paid));
        Ok(paid)
    }
}
