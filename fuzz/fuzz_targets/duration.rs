//! Fuzz target `duration`: see `sandboxer_fuzz::duration` (fuzz/checks.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxer_fuzz::duration(data));
