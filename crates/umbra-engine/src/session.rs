//! The host API implemented once for both engines: the JavaScript and wasm bindings only convert arguments and
//! call these methods, so the two engines cannot drift apart in what a contract may do.

use std::collections::BTreeMap;
use std::rc::Rc;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::api::{Event, FetchRequest, FetchResponse, Host, Invocation, Limits, Mode, Outcome, Transfer};
use crate::error::EngineError;

/// Gas charged for every host function call, on top of [`GAS_PER_BYTE`] per byte moved.
pub(crate) const GAS_PER_HOST_CALL: u64 = 1_000;
/// Gas charged per byte crossing the host boundary.
pub(crate) const GAS_PER_BYTE: u64 = 1;

/// The gas a host call moving `bytes` bytes costs.
pub(crate) fn host_gas(bytes: usize) -> u64 {
    GAS_PER_HOST_CALL.saturating_add((bytes as u64).saturating_mul(GAS_PER_BYTE))
}

/// One invocation's view of the world and the effects it has produced so far.
pub(crate) struct Session {
    pub(crate) inv: Invocation,
    host: Rc<dyn Host>,
    limits: Limits,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<Event>,
    transfers: Vec<Transfer>,
    /// Stream 0: `random(n)`.
    rng: ChaCha20Rng,
    /// Stream 1: JavaScript's `Math.random`, so that using one does not shift the other.
    math_rng: ChaCha20Rng,
    output_bytes: usize,
    calls: u64,
    /// An error that ends the invocation whatever the contract does next (it cannot be caught).
    pub(crate) fatal: Option<EngineError>,
}

impl Session {
    pub(crate) fn new(inv: Invocation, host: Rc<dyn Host>, limits: Limits) -> Session {
        let mut rng = ChaCha20Rng::from_seed(inv.seed);
        rng.set_stream(0);
        let mut math_rng = ChaCha20Rng::from_seed(inv.seed);
        math_rng.set_stream(1);
        Session {
            inv,
            host,
            limits,
            writes: BTreeMap::new(),
            events: Vec::new(),
            transfers: Vec::new(),
            rng,
            math_rng,
            output_bytes: 0,
            calls: 0,
            fatal: None,
        }
    }

    /// Records `error` as the invocation's end (the first one wins) and returns it.
    pub(crate) fn fail(&mut self, error: EngineError) -> EngineError {
        if self.fatal.is_none() {
            self.fatal = Some(error.clone());
        }
        error
    }

    pub(crate) fn into_outcome(self, output: Vec<u8>, gas_used: u64) -> Result<Outcome, EngineError> {
        if let Some(e) = self.fatal {
            return Err(e);
        }
        let total = self.output_bytes.saturating_add(output.len());
        if total > self.limits.max_output_bytes {
            return Err(EngineError::LimitExceeded(format!("output of {total} bytes")));
        }
        Ok(Outcome { output, writes: self.writes, events: self.events, transfers: self.transfers, gas_used })
    }

    fn count_output(&mut self, n: usize) -> Result<(), EngineError> {
        self.output_bytes = self.output_bytes.saturating_add(n);
        if self.output_bytes > self.limits.max_output_bytes {
            return Err(self.fail(EngineError::LimitExceeded(format!("output of {} bytes", self.output_bytes))));
        }
        Ok(())
    }

    fn check_key(&mut self, key: &[u8]) -> Result<(), EngineError> {
        if key.len() > self.limits.max_key_len {
            return Err(self.fail(EngineError::LimitExceeded(format!("storage key of {} bytes", key.len()))));
        }
        Ok(())
    }

    pub(crate) fn storage_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.check_key(key)?;
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        let contract = self.inv.contract;
        self.host.storage_get(&contract, key).map_err(|e| self.fail(EngineError::Host(e.0)))
    }

    pub(crate) fn storage_set(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), EngineError> {
        self.check_key(&key)?;
        if value.len() > self.limits.max_value_len {
            return Err(self.fail(EngineError::LimitExceeded(format!("storage value of {} bytes", value.len()))));
        }
        self.count_output(key.len() + value.len())?;
        self.writes.insert(key, Some(value));
        Ok(())
    }

    pub(crate) fn storage_remove(&mut self, key: Vec<u8>) -> Result<(), EngineError> {
        self.check_key(&key)?;
        self.count_output(key.len())?;
        self.writes.insert(key, None);
        Ok(())
    }

    pub(crate) fn emit(&mut self, name: String, data: Vec<u8>) -> Result<(), EngineError> {
        self.count_output(name.len() + data.len())?;
        self.events.push(Event { name, data });
        Ok(())
    }

    pub(crate) fn random(&mut self, n: usize) -> Result<Vec<u8>, EngineError> {
        if n > self.limits.max_random_len {
            return Err(self.fail(EngineError::LimitExceeded(format!("random({n})"))));
        }
        let mut out = vec![0u8; n];
        self.rng.fill_bytes(&mut out);
        Ok(out)
    }

    /// 53 random bits, for `Math.random() = bits / 2^53` (exact in a double, so identical everywhere).
    pub(crate) fn math_random_bits(&mut self) -> u64 {
        self.math_rng.next_u64() >> 11
    }

    pub(crate) fn derive_key(&mut self, salt: &[u8]) -> Result<[u8; 32], EngineError> {
        let contract = self.inv.contract;
        self.host.derive_key(&contract, salt).map_err(|e| self.fail(EngineError::Host(e.0)))
    }

    pub(crate) fn sign(&mut self, msg: &[u8]) -> Result<[u8; 64], EngineError> {
        let contract = self.inv.contract;
        self.host.sign(&contract, msg).map_err(|e| self.fail(EngineError::Host(e.0)))
    }

    pub(crate) fn verify(public_key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
        umbra_crypto::verify(&umbra_types::Address(*public_key), msg, sig).is_ok()
    }

    pub(crate) fn transfer(&mut self, to: [u8; 32], amount: u128) -> Result<(), EngineError> {
        self.count_output(48)?;
        self.transfers.push(Transfer { to, amount });
        Ok(())
    }

    /// Calls `method` of `contract` through the host with `remaining` gas; returns the output and the gas used,
    /// or the callee's error and the gas it used.
    pub(crate) fn call(
        &mut self,
        contract: [u8; 32],
        method: String,
        args: Vec<u8>,
        remaining: u64,
    ) -> Result<(Vec<u8>, u64), (EngineError, u64)> {
        let depth = self.inv.depth.saturating_add(1);
        if depth > self.limits.max_call_depth {
            return Err((self.fail(EngineError::DepthExceeded(self.limits.max_call_depth)), 0));
        }
        self.calls += 1;
        // Each call gets its own seed, fixed by the caller's seed, the call's position and the callee.
        let mut h = Sha256::new();
        h.update(b"umbra/engine/call-seed");
        h.update(self.inv.seed);
        h.update(self.calls.to_le_bytes());
        h.update(contract);
        let nested = Invocation {
            contract,
            mode: self.inv.mode,
            method,
            args,
            caller: Some(self.inv.contract),
            height: self.inv.height,
            time_ms: self.inv.time_ms,
            seed: h.finalize().into(),
            budget: remaining,
            depth,
        };
        match self.host.call(&nested) {
            Ok(out) => Ok((out.output, out.gas_used)),
            Err(f) => {
                tracing::debug!(callee = %hex32(&contract), error = %f.error, "nested call failed");
                Err((self.fail(f.error), f.gas_used))
            }
        }
    }

    pub(crate) fn fetch(&mut self, request: FetchRequest) -> Result<FetchResponse, EngineError> {
        if self.inv.mode == Mode::Command {
            return Err(self.fail(EngineError::NotAllowedInCommand("fetch")));
        }
        self.host.fetch(&request).map_err(|e| self.fail(EngineError::Host(e.0)))
    }

    /// A wallet request of an agent handler. A refusal is an error the handler may catch (not fatal).
    pub(crate) fn wallet(&mut self, request: &crate::WalletRequest) -> Result<serde_json::Value, EngineError> {
        if self.inv.mode == Mode::Command {
            return Err(self.fail(EngineError::NotAllowedInCommand("the agent wallet")));
        }
        self.host.wallet(request).map_err(|e| EngineError::Host(e.0))
    }
}

/// Lowercase hex of 32 bytes.
pub(crate) fn hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let b = [0xabu8; 32];
        assert_eq!(parse_hex32(&hex32(&b)), Some(b));
        assert_eq!(parse_hex32("0x12"), None);
        assert_eq!(parse_hex32(&"zz".repeat(32)), None);
    }
}
