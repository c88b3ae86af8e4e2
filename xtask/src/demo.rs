//! The main job: build the bundled example OVA with real Packer through `sandboxer create`.

use xshell::{Shell, cmd};

use crate::setup::{self, Purpose};

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    setup::run(sh, Purpose::Demo)?;
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --release --quiet --package sandboxer").run()?;
    let sandboxer = "target/release/sandboxer";
    let id = cmd!(sh, "{sandboxer} create --profile profile.vm-packer-build").read()?;
    cmd!(sh, "{sandboxer} show {id}").run()?;
    cmd!(sh, "{sandboxer} list").run()?;
    eprintln!(
        "\nxtask demo: built sandbox {id}; `{sandboxer} teardown {id}` removes it and keeps the OVA"
    );
    Ok(())
}
