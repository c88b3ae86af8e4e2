//! Fuzz target `machine_readable`: see `sandboxer_fuzz::machine_readable` (fuzz/checks.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxer_fuzz::machine_readable(data));
