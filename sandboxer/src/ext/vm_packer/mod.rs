//! `ext.vm-packer`: VMs, built by HashiCorp Packer (build mode, in `build`) or adopted while
//! they run (attach mode, the default, in `attach`). This module owns the input schema and
//! dispatches on the mode.

mod attach;
mod build;
pub mod machine_readable;
pub mod port_registry;
pub mod runner;
mod selection;
pub mod template;
pub mod var_files;

use anyhow::Context as _;
use camino::Utf8Path;

use super::{Environment, Extension, Prepared, TeardownContext};
use crate::inputs::{InputSchema, InputSpec, Inputs, Kind};

/// The `ext.vm-packer` extension.
#[derive(Debug)]
pub struct VmPacker;

pub const ID: &str = "ext.vm-packer";

/// The mode that adopts a running VM; the default, as it was the first mode.
const ATTACH: &str = "attach";
const BUILD: &str = "build";

/// Free-form inputs `var.NAME=value` become `-var NAME=value`.
pub(super) const VAR_PREFIX: &str = "var.";

static SPECS: [InputSpec; 14] = [
    InputSpec {
        default: Some(ATTACH),
        allowed: &[ATTACH, BUILD],
        ..InputSpec::new(
            "mode",
            "attach: adopt a VM that already runs, verified over SSH; build: run a Packer build and keep its OVA",
        )
    },
    InputSpec {
        required: true,
        modes: &[BUILD],
        ..InputSpec::new(
            "packer_template",
            "template file (*.pkr.hcl, *.pkr.json, legacy *.json) or directory; relative to the current directory",
        )
    },
    InputSpec {
        required: true,
        validate: Some(crate::names::check_name),
        ..InputSpec::new(
            "vm_name",
            "names the VM and its files: letters, digits, `.`, `_`, `-`",
        )
    },
    InputSpec {
        validate: Some(crate::names::check_name),
        ..InputSpec::new(
            "project",
            "the project a build machine is for; passed as -var project=... when the template declares it",
        )
    },
    InputSpec {
        kind: Kind::List,
        modes: &["build"],
        ..InputSpec::new(
            "var_files",
            "var files (*.pkrvars.hcl, *.pkrvars.json) passed as -var-file=..., in order, after the template's own *.auto.pkrvars.*; relative to the current directory",
        )
    },
    InputSpec {
        kind: Kind::List,
        modes: &["build"],
        ..InputSpec::new(
            "only",
            "builds to run (TYPE.NAME, BUILD.TYPE.NAME, or a glob), passed as -only=...",
        )
    },
    InputSpec {
        kind: Kind::List,
        modes: &["build"],
        ..InputSpec::new(
            "except",
            "builds to skip (TYPE.NAME, BUILD.TYPE.NAME, or a glob), passed as -except=...",
        )
    },
    InputSpec {
        modes: &["build"],
        allowed: &["true", "false"],
        ..InputSpec::new(
            "strict_vars",
            "true: a var file setting a variable the template does not declare is an error, not a warning",
        )
    },
    InputSpec {
        modes: &[ATTACH],
        validate: Some(crate::ssh::check_host),
        ..InputSpec::new(
            "host",
            "the VM's SSH host; when absent, vm_name is looked up in the port registry",
        )
    },
    InputSpec {
        modes: &[ATTACH],
        validate: Some(check_port),
        ..InputSpec::new(
            "ssh_port",
            "the VM's SSH port: 22 with `host`, else the port registry's",
        )
    },
    InputSpec {
        modes: &[ATTACH],
        validate: Some(crate::ssh::check_user),
        ..InputSpec::new(
            "ssh_user",
            "log in as this user to verify the VM (ssh -o BatchMode=yes ... true)",
        )
    },
    InputSpec {
        modes: &[ATTACH],
        ..InputSpec::new(
            "ssh_identity",
            "private key file to log in with (path only: never read or recorded); relative to the current directory",
        )
    },
    InputSpec {
        modes: &[ATTACH],
        default: Some("10s"),
        validate: Some(check_connect_timeout),
        ..InputSpec::new(
            "connect_timeout",
            "how long the TCP connect and SSH banner, and then the login, may each take",
        )
    },
    InputSpec {
        modes: &[ATTACH],
        ..InputSpec::new(
            "port_registry",
            "the-custodian's port registry (TOML); default $SANDBOXER_PORT_REGISTRY; relative to the current directory",
        )
    },
];

pub(super) static SCHEMA: InputSchema = InputSchema {
    specs: &SPECS,
    free_form: Some((
        VAR_PREFIX,
        "passed to Packer as -var NAME=value (only variables the template declares); beats var files",
    )),
};

impl Extension for VmPacker {
    fn id(&self) -> &'static str {
        ID
    }

    fn summary(&self) -> &'static str {
        "VMs: attach mode adopts a running VM over SSH and teardown only detaches; build mode runs Packer and keeps the OVA"
    }

    fn input_schema(&self) -> &'static InputSchema {
        &SCHEMA
    }

    fn prepare(&self, inputs: &mut Inputs, env: &Environment) -> anyhow::Result<Box<dyn Prepared>> {
        match inputs.mode() {
            Some(BUILD) => build::prepare(inputs, env),
            _ => attach::prepare(inputs, env),
        }
    }

    fn teardown(&self, sandbox: TeardownContext<'_>) -> anyhow::Result<()> {
        if sandbox.mode == ATTACH {
            return attach::teardown(sandbox);
        }
        let TeardownContext {
            dirs, artifacts, ..
        } = sandbox;
        // Keep OVAs: move them out of the sandbox's directory before removing its working files.
        let root = dirs
            .root
            .canonicalize_utf8()
            .unwrap_or_else(|_| dirs.root.clone());
        for artifact in artifacts.iter_mut() {
            if !is_ova(&artifact.path) || !artifact.path.starts_with(&root) {
                continue;
            }
            let kept = dirs
                .kept_artifacts
                .join(artifact.path.file_name().unwrap_or("artifact.ova"));
            if artifact.path.exists() {
                std::fs::create_dir_all(&dirs.kept_artifacts)
                    .with_context(|| format!("creating {}", dirs.kept_artifacts))?;
                std::fs::rename(&artifact.path, &kept)
                    .with_context(|| format!("moving {} to {kept}", artifact.path))?;
            }
            if kept.exists() {
                artifact.path = kept;
            }
        }
        for dir in [&dirs.work, &dirs.output] {
            remove_dir_if_present(dir)?;
        }
        // Only what survived: an artifact that lived in the working files is gone now.
        artifacts.retain(|artifact| artifact.path.exists());
        Ok(())
    }
}

pub(super) fn remove_dir_if_present(dir: &Utf8Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {dir}")),
    }
}

pub(super) fn required<'a>(inputs: &'a Inputs, name: &str) -> anyhow::Result<&'a str> {
    inputs
        .get(name)
        .with_context(|| format!("input `{name}` is missing"))
}

fn check_port(value: &str) -> Result<(), String> {
    crate::ssh::parse_port(value).map(drop)
}

/// The longest `connect_timeout`: a machine that takes longer to answer is not usable.
const MAX_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

pub(super) fn parse_connect_timeout(value: &str) -> Result<std::time::Duration, String> {
    let timeout = crate::duration::parse_std(value, "connect timeout")
        .map_err(|problem| format!("is not a duration: {problem}"))?;
    if timeout.is_zero() || timeout > MAX_CONNECT_TIMEOUT {
        return Err("must be from 1s to 10m".to_owned());
    }
    Ok(timeout)
}

fn check_connect_timeout(value: &str) -> Result<(), String> {
    parse_connect_timeout(value).map(drop)
}

pub(super) fn is_ova(path: &Utf8Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("ova"))
}
