#!/bin/sh
# Verifies the `make remote-build` shim end to end, as the-custodian's CI would: a thin wrapper
# around `cargo xtask verify-shim` (real make, sh, Packer and the sandboxer built here, in a
# throwaway copy of tests/fixtures/the-custodian/). One PASS/FAIL line per check; non-zero if
# any check failed.
set -eu
cd "$(dirname "$0")/.."
exec cargo xtask verify-shim
