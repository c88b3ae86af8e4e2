//! Attach mode: adopts a VM that already runs. Finds its SSH server (the `host` input, else
//! the port registry), verifies it (a TCP connect and an SSH banner, and with a user or key a
//! real login), and records how to reach it. Teardown only detaches: sandboxer never made the
//! VM, so it never stops, deletes or changes it.

use std::fs::OpenOptions;
use std::io::{LineWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::Duration;

use anyhow::Context as _;

use super::port_registry::{self, PortRegistry};
use super::{parse_connect_timeout, remove_dir_if_present, required};
use crate::cancel::Cancel;
use crate::error::usage;
use crate::ext::{Claim, Environment, Prepared, ProvisionContext, Provisioned, TeardownContext};
use crate::inputs::Inputs;
use crate::progress::Progress;
use crate::record::ForwardedPort;
use crate::ssh::{self, SshClient, SshTarget};

/// The SSH port when `host` is given without `ssh_port`.
const DEFAULT_SSH_PORT: u16 = 22;

/// Checks attach-mode inputs and finds the VM: its address from the inputs or the port
/// registry, its key file, and the `ssh` client when a login is part of the check.
pub(super) fn prepare(inputs: &mut Inputs, env: &Environment) -> anyhow::Result<Box<dyn Prepared>> {
    let vm_name = required(inputs, "vm_name")?.to_owned();
    // Both were checked by the schema's validators already.
    let connect_timeout = parse_connect_timeout(inputs.get("connect_timeout").unwrap_or("10s"))
        .map_err(|problem| usage(format!("input `connect_timeout` {problem}")))?;
    let given_port = inputs
        .get("ssh_port")
        .map(ssh::parse_port)
        .transpose()
        .map_err(|problem| usage(format!("input `ssh_port` {problem}")))?;

    let (host, port, found_in, forwarded_ports) = match inputs.get("host") {
        Some(host) => (
            host.to_owned(),
            given_port.unwrap_or(DEFAULT_SSH_PORT),
            "the inputs".to_owned(),
            Vec::new(),
        ),
        None => {
            let Some((path, shown_as)) = port_registry::locate(
                inputs.get("port_registry"),
                env.port_registry.as_deref(),
                &env.cwd,
            ) else {
                return Err(usage(format!(
                    "attach mode needs the address of vm `{vm_name}`: give --input host=HOST (and ssh_port=PORT), or name the-custodian's port registry with the `port_registry` input or $SANDBOXER_PORT_REGISTRY"
                )));
            };
            let registry = PortRegistry::load(&path, &shown_as)?;
            let entry = registry.find(&vm_name)?;
            (
                entry.host.clone(),
                given_port.unwrap_or(entry.ssh_port),
                format!("the port registry {shown_as}"),
                entry.forwarded_ports.clone(),
            )
        }
    };

    let identity = match inputs.get("ssh_identity") {
        Some(value) => {
            let path = env.cwd.join(value);
            // Only the path is checked and recorded; the key is for ssh alone to read.
            let is_file = std::fs::metadata(&path)
                .map_err(|err| usage(format!("input `ssh_identity`: cannot use {path}: {err}")))?
                .is_file();
            if !is_file {
                return Err(usage(format!(
                    "input `ssh_identity`: {path} is not a file (give the private key's path)"
                )));
            }
            Some(path)
        }
        None => None,
    };
    let user = inputs.get("ssh_user").map(str::to_owned);
    let login = if user.is_some() || identity.is_some() {
        Some(SshClient::find(&env.known_hosts).map_err(|err| usage(format!("{err:#}")))?)
    } else {
        None
    };
    Ok(Box::new(Attach {
        vm_name,
        target: SshTarget {
            host,
            port,
            user,
            identity,
        },
        found_in,
        forwarded_ports,
        connect_timeout,
        login,
    }))
}

/// A VM found and ready to be verified.
#[derive(Debug)]
struct Attach {
    vm_name: String,
    target: SshTarget,
    /// Where the address came from ("the port registry ports.toml"), for progress and the log.
    found_in: String,
    forwarded_ports: Vec<ForwardedPort>,
    connect_timeout: Duration,
    /// The client for a real login, when a user or key was given.
    login: Option<SshClient>,
}

impl Prepared for Attach {
    fn provision(self: Box<Self>, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&ctx.dirs.log)
            .with_context(|| format!("opening log {}", ctx.dirs.log))?;
        let mut log = LineWriter::new(log_file);
        let verified = self.verify(&mut log, ctx.progress, ctx.cancel);
        if let Err(err) = &verified {
            writeln!(log, "# sandboxer: {err:#}")?;
        }
        verified.with_context(|| format!("cannot attach vm `{}`", self.vm_name))?;
        let mut provisioned = Provisioned::new(Vec::new());
        provisioned.ssh = Some(self.target);
        provisioned.forwarded_ports = self.forwarded_ports;
        Ok(provisioned)
    }

    /// One live sandbox per VM: two sandboxes holding one VM would each believe it theirs.
    fn claim(&self) -> Option<Claim> {
        Some(Claim {
            key: format!("vm:{}", self.vm_name),
            what: format!("vm `{}`", self.vm_name),
        })
    }
}

impl Attach {
    /// The checks, in order: TCP connect and SSH banner, then (with a user or key) a login.
    fn verify(
        &self,
        log: &mut dyn std::io::Write,
        progress: &mut dyn Progress,
        cancel: &Cancel,
    ) -> anyhow::Result<()> {
        let endpoint = self.target.endpoint();
        let mut note = |progress: &mut dyn Progress, message: String| -> anyhow::Result<()> {
            writeln!(log, "# sandboxer: {message}")?;
            progress.note(message);
            Ok(())
        };
        note(
            progress,
            format!(
                "attaching vm `{}` at {endpoint} (from {})",
                self.vm_name, self.found_in
            ),
        )?;
        let banner = ssh::probe(
            &self.target.host,
            self.target.port,
            self.connect_timeout,
            cancel,
        )?;
        let banner: String = banner
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        note(progress, format!("{endpoint} speaks SSH: {banner}"))?;
        if let Some(client) = &self.login {
            note(
                progress,
                format!(
                    "logging in as {} (ssh -o BatchMode=yes ... true)",
                    self.target.describe()
                ),
            )?;
            client.verify_login(&self.target, self.connect_timeout, cancel, progress)?;
            note(
                progress,
                format!(
                    "logged in; the host key of {endpoint} is in {}",
                    client.known_hosts()
                ),
            )?;
        }
        Ok(())
    }
}

/// Detaches: removes sandboxer's own working files, if any, and nothing else.
pub(super) fn teardown(sandbox: TeardownContext<'_>) -> anyhow::Result<()> {
    for dir in [&sandbox.dirs.work, &sandbox.dirs.output] {
        remove_dir_if_present(dir)?;
    }
    Ok(())
}
