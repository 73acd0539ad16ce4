#![no_main]
//! Transactions arrive from RPC clients and p2p gossip: decoding must never panic, and whatever
//! decodes must re-encode to the same bytes (the codec is canonical).
use libfuzzer_sys::fuzz_target;
use umbra_types::{SignedTransaction, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = decode::<SignedTransaction>(data, 1 << 20) {
        assert_eq!(encode(&tx), data);
    }
});
