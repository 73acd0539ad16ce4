#![no_main]
//! Blocks arrive from proposers and backfill peers: decoding must never panic and must be canonical.
use libfuzzer_sys::fuzz_target;
use umbra_types::{Block, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = decode::<Block>(data, 1 << 24) {
        assert_eq!(encode(&b), data);
    }
});
