//! The chain modules and the contract they share.
//!
//! Order of application (written out once, in `Runtime`): `system`, `balances`, `staking`, then
//! `registry` (with the message queue, `mq`), then `contracts`, `agents` and `multisig` (calls only, no block
//! hooks; a multisig's executed call goes back through the runtime's dispatch), then
//! `governance` (whose enactment at block end calls into `registry`, `balances`, `agents` and `system` params). At the end of every block the committee selection of `staking` runs last, after every
//! module's end-of-block hook.

pub(crate) mod agent_wallet;
pub(crate) mod agents;
pub(crate) mod balances;
pub(crate) mod contracts;
pub(crate) mod economics;
pub(crate) mod governance;
pub(crate) mod mq;
pub(crate) mod multisig;
pub(crate) mod registry;
pub(crate) mod staking;
pub(crate) mod system;

use crate::{BlockEnv, Overlay, RuntimeError, StateRead};
use std::future::Future;
use umbra_types::Genesis;

/// The contract every chain module follows: initial state from genesis, hooks at the beginning and end
/// of every block. Transaction handling is per call type and lives on the module that owns the call.
pub trait Module {
    /// The module's name, used in logs and state key tags.
    const NAME: &'static str;

    /// Writes the module's initial state.
    fn genesis<S: StateRead>(
        &self,
        genesis: &Genesis,
        state: &mut Overlay<'_, S>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Runs before the block's transactions.
    fn begin_block<S: StateRead>(
        &self,
        _env: &BlockEnv,
        _state: &mut Overlay<'_, S>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        async { Ok(()) }
    }

    /// Runs after the block's transactions.
    fn end_block<S: StateRead>(
        &self,
        _env: &BlockEnv,
        _state: &mut Overlay<'_, S>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        async { Ok(()) }
    }
}
