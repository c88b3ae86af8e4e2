//! Fuzz target `profile`: see `sandboxer_fuzz::profile` (fuzz/checks.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxer_fuzz::profile(data));
