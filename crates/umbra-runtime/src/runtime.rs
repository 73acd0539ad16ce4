use crate::modules::balances::Balances;
use crate::modules::system::System;
use crate::{AdmissionError, BlockError, ChangeSet, Module, Overlay, RuntimeError, StateRead};
use std::collections::BTreeSet;
use umbra_types::{Address, Amount, Call, Genesis, Hash, Params, Receipt, SignedTransaction};

/// What a block's execution needs from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEnv {
    /// The block's height.
    pub height: u64,
    /// The block's timestamp (the only clock the state machine sees).
    pub timestamp_ms: u64,
    /// The proposer's account, which receives its share of the fees.
    pub proposer: Address,
    /// The consensus epoch.
    pub epoch: u64,
}

/// The result of executing a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Every state write.
    pub changes: ChangeSet,
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Fees charged in the block.
    pub fees: Amount,
}

/// A block assembled by a proposer from candidate transactions.
#[derive(Clone, Debug, Default)]
pub struct BuiltBlock {
    /// The transactions that made it in, in order.
    pub txs: Vec<SignedTransaction>,
    /// Their execution.
    pub outcome: BlockOutcome,
    /// Candidates left out and why (stale nonce, fee no longer payable ...).
    pub rejected: Vec<(Hash, AdmissionError)>,
}

/// The checks that need no state: size, chain id, minimum fee and (optionally) the signature.
pub fn stateless_check(
    chain_id: &str,
    params: &Params,
    stx: &SignedTransaction,
    size: usize,
    check_signature: bool,
) -> Result<(), AdmissionError> {
    let max = params.max_tx_bytes as usize;
    if size > max {
        return Err(AdmissionError::TooLarge { size, max });
    }
    if stx.tx.chain_id != chain_id {
        return Err(AdmissionError::WrongChainId { expected: chain_id.to_string(), got: stx.tx.chain_id.clone() });
    }
    let min = params.fees.min_fee(size, &stx.tx.call);
    if stx.tx.fee < min {
        return Err(AdmissionError::FeeTooLow { fee: stx.tx.fee, min });
    }
    if check_signature {
        umbra_crypto::verify_transaction(stx).map_err(|e| AdmissionError::BadSignature(e.to_string()))?;
    }
    Ok(())
}

/// The state machine: the modules, applied in the order written in this type's methods.
#[derive(Default)]
pub struct Runtime {
    system: System,
    balances: Balances,
}

impl Default for System {
    fn default() -> Self {
        System
    }
}

impl Default for Balances {
    fn default() -> Self {
        Balances
    }
}

impl Runtime {
    /// A runtime with every module.
    pub fn new() -> Self {
        Runtime::default()
    }

    /// The state changes that create the chain from `genesis` (applied to an empty state).
    pub async fn genesis<S: StateRead>(&self, genesis: &Genesis, empty: &S) -> Result<ChangeSet, RuntimeError> {
        genesis.validate().map_err(|e| RuntimeError::Genesis(e.to_string()))?;
        let mut s = Overlay::new(empty);
        self.system.genesis(genesis, &mut s).await?;
        self.balances.genesis(genesis, &mut s).await?;
        Ok(s.into_changes())
    }

    /// The chain id and current parameters.
    pub async fn chain_params<S: StateRead>(&self, state: &S) -> Result<(String, Params), RuntimeError> {
        let s = Overlay::new(state);
        Ok((self.system.chain(&s).await?.chain_id, self.system.params(&s).await?))
    }

    /// An account's balance and nonce.
    pub async fn account<S: StateRead>(
        &self,
        state: &S,
        who: &Address,
    ) -> Result<umbra_types::state_keys::AccountRecord, RuntimeError> {
        self.balances.account(&Overlay::new(state), who).await
    }

    /// The last applied block's height and time, as recorded in state.
    pub async fn tip<S: StateRead>(&self, state: &S) -> Result<umbra_types::state_keys::Tip, RuntimeError> {
        self.system.tip(&Overlay::new(state)).await
    }

    /// Total tokens issued (the sum of all balances).
    pub async fn total_issued<S: StateRead>(&self, state: &S) -> Result<Amount, RuntimeError> {
        self.balances.total_issued(&Overlay::new(state)).await
    }

    /// The stateful admission check against `state`: exact nonce and a balance covering the fee.
    pub async fn check_stateful<S: StateRead>(&self, state: &S, stx: &SignedTransaction) -> Result<(), AdmissionError> {
        self.balances.check(&Overlay::new(state), stx).await
    }

    async fn begin<S: StateRead>(&self, env: &BlockEnv, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        self.system.begin_block(env, s).await?;
        self.balances.begin_block(env, s).await
    }

    async fn end<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        fees: Amount,
    ) -> Result<(), RuntimeError> {
        self.balances.distribute_fees(env, s, fees).await?;
        self.system.end_block(env, s).await?;
        self.balances.end_block(env, s).await
    }

    /// Applies one admitted transaction: charge the fee, advance the nonce, run the call. A failing
    /// call's writes are undone; its fee stays paid.
    async fn apply_tx<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        stx: &SignedTransaction,
        index: u32,
    ) -> Result<Receipt, RuntimeError> {
        self.balances.charge(s, stx).await?;
        s.checkpoint();
        let result = match &stx.tx.call {
            Call::Transfer { to, amount } => self.balances.transfer(s, &stx.tx.signer, to, *amount).await?,
        };
        match result {
            Ok(()) => s.commit_checkpoint(),
            Err(_) => s.revert(),
        }
        Ok(Receipt { tx_hash: stx.hash(), height: env.height, index, fee_paid: stx.tx.fee, error: result.err() })
    }

    /// Executes a proposed block. Any transaction that could not have been admitted (bad signature
    /// when `check_signatures`, wrong chain, too large, fee too low, wrong nonce, unpayable fee) makes
    /// the whole block invalid.
    pub async fn execute_block<S: StateRead>(
        &self,
        state: &S,
        env: &BlockEnv,
        txs: &[SignedTransaction],
        check_signatures: bool,
    ) -> Result<BlockOutcome, BlockError> {
        let mut s = Overlay::new(state);
        let chain = self.system.chain(&s).await?;
        let params = self.system.params(&s).await?;
        if txs.len() > params.max_block_txs as usize {
            return Err(BlockError::TooManyTransactions { count: txs.len(), max: params.max_block_txs as usize });
        }
        if check_signatures && let Err((index, e)) = umbra_crypto::verify_transactions(txs) {
            return Err(BlockError::InvalidTransaction {
                index,
                hash: txs[index].hash(),
                error: AdmissionError::BadSignature(e.to_string()),
            });
        }
        self.begin(env, &mut s).await?;
        let mut seen = BTreeSet::new();
        let mut receipts = Vec::with_capacity(txs.len());
        let mut fees: Amount = 0;
        for (index, stx) in txs.iter().enumerate() {
            let hash = stx.hash();
            if !seen.insert(hash) {
                return Err(BlockError::Duplicate(hash));
            }
            let invalid = |error| BlockError::InvalidTransaction { index, hash, error };
            stateless_check(&chain.chain_id, &params, stx, stx.to_bytes().len(), false).map_err(invalid)?;
            self.balances.check(&s, stx).await.map_err(invalid)?;
            fees = fees.saturating_add(stx.tx.fee);
            receipts.push(self.apply_tx(env, &mut s, stx, index as u32).await?);
        }
        self.end(env, &mut s, fees).await?;
        Ok(BlockOutcome { changes: s.into_changes(), receipts, fees })
    }

    /// Assembles a block from `candidates` (already signature-checked at admission), in order,
    /// leaving out those that are no longer valid against `state` and stopping at the block limit.
    pub async fn build_block<S: StateRead>(
        &self,
        state: &S,
        env: &BlockEnv,
        candidates: Vec<SignedTransaction>,
    ) -> Result<BuiltBlock, RuntimeError> {
        let mut s = Overlay::new(state);
        let chain = self.system.chain(&s).await?;
        let params = self.system.params(&s).await?;
        self.begin(env, &mut s).await?;
        let mut built = BuiltBlock::default();
        let mut seen = BTreeSet::new();
        let mut fees: Amount = 0;
        for stx in candidates {
            if built.txs.len() >= params.max_block_txs as usize {
                break;
            }
            let hash = stx.hash();
            if !seen.insert(hash) {
                continue;
            }
            let check = match stateless_check(&chain.chain_id, &params, &stx, stx.to_bytes().len(), false) {
                Ok(()) => self.balances.check(&s, &stx).await,
                Err(e) => Err(e),
            };
            if let Err(e) = check {
                built.rejected.push((hash, e));
                continue;
            }
            fees = fees.saturating_add(stx.tx.fee);
            let receipt = self.apply_tx(env, &mut s, &stx, built.txs.len() as u32).await?;
            built.outcome.receipts.push(receipt);
            built.txs.push(stx);
        }
        self.end(env, &mut s, fees).await?;
        built.outcome.fees = fees;
        built.outcome.changes = s.into_changes();
        Ok(built)
    }
}
