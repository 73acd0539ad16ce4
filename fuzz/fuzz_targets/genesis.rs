#![no_main]
//! Genesis files are operator input: parsing and validation must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = umbra_types::Genesis::from_json(text);
    }
});
