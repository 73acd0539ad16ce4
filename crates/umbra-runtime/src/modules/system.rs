//! `system`: chain identity, parameters and the block clock.
use crate::{BlockEnv, Module, Overlay, RuntimeError, StateRead};
use borsh::{BorshDeserialize, BorshSerialize};
use umbra_types::state_keys::{StateKey, Tip};
use umbra_types::{Genesis, Params};

/// The chain's identity as stored in state.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ChainRecord {
    pub(crate) chain_id: String,
    pub(crate) genesis_time_ms: u64,
    pub(crate) tee_dev_enabled: bool,
}

/// The `system` module.
pub(crate) struct System;

impl System {
    pub(crate) async fn params<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Params, RuntimeError> {
        s.get(&StateKey::SystemParams, "system params").await?.ok_or(RuntimeError::Missing("system params"))
    }

    pub(crate) async fn chain<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<ChainRecord, RuntimeError> {
        s.get(&StateKey::SystemChain, "system chain").await?.ok_or(RuntimeError::Missing("system chain"))
    }

    pub(crate) async fn tip<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Tip, RuntimeError> {
        s.get(&StateKey::SystemTip, "system tip").await?.ok_or(RuntimeError::Missing("system tip"))
    }
}

impl Module for System {
    const NAME: &'static str = "system";

    async fn genesis<S: StateRead>(&self, g: &Genesis, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        s.put(
            &StateKey::SystemChain,
            &ChainRecord {
                chain_id: g.chain_id.clone(),
                genesis_time_ms: g.genesis_time_ms,
                tee_dev_enabled: g.registry.dev_enabled(),
            },
        );
        s.put(&StateKey::SystemParams, &g.params);
        s.put(&StateKey::SystemTip, &Tip { height: 0, timestamp_ms: g.genesis_time_ms });
        Ok(())
    }

    async fn begin_block<S: StateRead>(&self, env: &BlockEnv, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        // The consensus layer checks height and time against the parent header; here the state's own
        // record advances so a proof of `SystemTip` shows which block a state root belongs to.
        s.put(&StateKey::SystemTip, &Tip { height: env.height, timestamp_ms: env.timestamp_ms });
        // Block 1's parent is the genesis block: workers bind its hash into their report data.
        if env.height == 1 {
            s.put(&StateKey::GenesisHash, &env.parent);
        }
        Ok(())
    }
}
