#![no_main]
//! State proofs arrive from untrusted RPC nodes: decoding and verifying must never panic.
use libfuzzer_sys::fuzz_target;
use umbra_state::{StateProof, verify_proof};

fuzz_target!(|data: &[u8]| {
    if data.len() < 64 {
        return;
    }
    let (root, rest) = data.split_at(32);
    let (key, proof) = rest.split_at(32);
    if let Ok(p) = StateProof::from_bytes(proof) {
        let root: [u8; 32] = root.try_into().expect("32 bytes");
        let key: [u8; 32] = key.try_into().expect("32 bytes");
        let _ = verify_proof(&root, &key, &p);
    }
});
