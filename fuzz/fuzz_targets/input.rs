//! Fuzz target `input`: see `sandboxer_fuzz::input` (fuzz/checks.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxer_fuzz::input(data));
