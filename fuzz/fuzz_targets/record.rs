//! Fuzz target `record`: see `sandboxer_fuzz::record` (fuzz/checks.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxer_fuzz::record(data));
