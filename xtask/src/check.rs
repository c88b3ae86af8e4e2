//! Everything CI checks: formatting, lints, the whole test suite, the `make remote-build`
//! shim end to end, and a short fuzz run.

use xshell::{Shell, cmd};

use crate::setup::{self, Purpose};

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    setup::run(sh, Purpose::Test)?;
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} fmt --all --check").run()?;
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
    )
    .run()?;
    cmd!(sh, "{cargo} test --workspace --locked").run()?;
    // The tests built the debug binary; installing it proves the packaging, not the optimiser.
    crate::install::smoke_test(sh, &sh.current_dir().join("target/debug/sandboxer"))?;
    crate::verify_shim::run(sh)?;
    crate::fuzz::run(sh, &["--ci"])?;
    eprintln!("xtask check: all green");
    Ok(())
}
