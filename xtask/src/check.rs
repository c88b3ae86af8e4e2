//! Everything CI checks: formatting, lints, and the whole test suite.

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
    eprintln!("xtask check: all green");
    Ok(())
}
