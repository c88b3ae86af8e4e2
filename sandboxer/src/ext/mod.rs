//! The extension SDK: the `Extension` trait every kind of sandbox implements, and the built-ins.

pub mod vm_packer;

use camino::{Utf8Path, Utf8PathBuf};

use crate::cancel::Cancel;
use crate::inputs::{InputSchema, Inputs};
use crate::progress::Progress;
use crate::record::{Artifact, BuildRun, ForwardedPort};
use crate::registry::SandboxDirs;
use crate::ssh::SshTarget;

/// Facts about the machine sandboxer runs on and how it was invoked, gathered once by the
/// caller, for extensions to use.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where relative paths in inputs are resolved.
    pub cwd: Utf8PathBuf,
    /// Where extensions may cache things across sandboxes (bundled files, tool versions).
    pub cache_dir: Utf8PathBuf,
    /// An explicit Packer executable (`$SANDBOXER_PACKER`); otherwise `packer` on PATH.
    pub packer: Option<Utf8PathBuf>,
    /// How long a cancelled tool may take to clean up before it is killed.
    pub cancel_timeout: std::time::Duration,
    /// `-v`: extensions report details (decisions they made, checks they skipped) as progress.
    pub verbose: bool,
    /// sandboxer's own known_hosts file, under the state directory (see `ssh`).
    pub known_hosts: Utf8PathBuf,
    /// the-custodian's port registry (`$SANDBOXER_PORT_REGISTRY`), when set.
    pub port_registry: Option<Utf8PathBuf>,
    /// How long a tool may stay silent before a heartbeat is published; `None`: no heartbeats.
    pub heartbeat: Option<std::time::Duration>,
}

/// What a provision gets to work with.
pub struct ProvisionContext<'a> {
    pub sandbox_id: &'a str,
    pub dirs: &'a SandboxDirs,
    /// The placement host the sandbox was placed on (`local` is this machine).
    pub placement_host: &'a str,
    pub on_failure: OnFailure,
    pub env: &'a Environment,
    /// Where to report progress (notes, steps, artifacts, tool output); extensions never print.
    pub progress: &'a mut dyn Progress,
    /// Polled between steps; a running tool is signalled through it directly.
    pub cancel: &'a Cancel,
    /// The build host the sandbox was placed on when that is not this machine: the session
    /// that holds the build's slot there, its directory made (`<workdir>/<sandbox-id>`). Only
    /// a [`Prepared`] that [`runs on build hosts`](Prepared::runs_on_build_hosts) is placed on one.
    pub build_host: Option<&'a mut crate::remote::HostSession>,
}

/// What a failed (or cancelled) provision leaves behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Remove working files, keep the log.
    #[default]
    Cleanup,
    /// Keep everything for debugging, until the TTL or a teardown.
    Keep,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Cleanup => "cleanup",
            OnFailure::Keep => "keep",
        }
    }
}

impl std::fmt::Display for OnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OnFailure {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cleanup" => Ok(OnFailure::Cleanup),
            "keep" => Ok(OnFailure::Keep),
            other => Err(format!("expected `cleanup` or `keep`, not {other:?}")),
        }
    }
}

/// What a successful provision produced. Non-exhaustive, so that what sandboxer learns from a
/// provision can grow without breaking extensions: build it with [`Provisioned::new`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Provisioned {
    pub artifacts: Vec<Artifact>,
    /// The builds the tool ran, when it runs several (one per Packer source).
    pub builds: Vec<BuildRun>,
    /// How to reach the machine over SSH, when there is one.
    pub ssh: Option<SshTarget>,
    /// Other ports forwarded to the machine.
    pub forwarded_ports: Vec<ForwardedPort>,
}

/// Something only one live sandbox may hold at a time, such as an attached VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Compared between sandboxes of the same extension, and recorded: `vm:NAME`.
    pub key: String,
    /// What it is, for messages: "vm `NAME`".
    pub what: String,
}

impl Provisioned {
    pub fn new(artifacts: Vec<Artifact>) -> Provisioned {
        Provisioned {
            artifacts,
            ..Provisioned::default()
        }
    }

    /// Names the builds the tool ran (each artifact's `build` says which made it).
    pub fn with_builds(mut self, builds: Vec<BuildRun>) -> Provisioned {
        self.builds = builds;
        self
    }
}

/// What teardown may change: the sandbox's working directories and where its artifacts are.
pub struct TeardownContext<'a> {
    /// The mode the sandbox was made in (`build`, `attach`, ...).
    pub mode: &'a str,
    pub dirs: &'a SandboxDirs,
    /// The artifacts as recorded; teardown moves the ones it keeps and drops the rest.
    pub artifacts: &'a mut Vec<Artifact>,
}

/// One kind of sandbox.
///
/// `create` calls [`Extension::prepare`] before anything is written, then the returned
/// [`Prepared::provision`] once the sandbox is recorded and placed; `teardown` and `gc` call
/// [`Extension::teardown`]. Extensions report through the progress sink and return errors with
/// context; they never print, never exit the process, and never touch another sandbox's files.
pub trait Extension: Sync {
    /// The id profiles use, e.g. `ext.vm-packer`.
    fn id(&self) -> &'static str;

    /// One line for `profiles show`.
    fn summary(&self) -> &'static str;

    /// Every input the extension accepts, with the modes each applies to; required inputs are
    /// checked against it before `prepare` is called.
    fn input_schema(&self) -> &'static InputSchema;

    /// Checks resolved inputs and gathers what provisioning needs (reading files, finding
    /// tools), before a sandbox is allocated; marks inputs that turn out to be sensitive, so
    /// nothing about the sandbox is written with them in clear.
    fn prepare(&self, inputs: &mut Inputs, env: &Environment) -> anyhow::Result<Box<dyn Prepared>>;

    /// Removes what the sandbox holds, keeping what the extension promises to keep. Must be
    /// idempotent, and must never touch anything the extension did not make (an attached VM:
    /// tearing it down only detaches).
    fn teardown(&self, sandbox: TeardownContext<'_>) -> anyhow::Result<()>;
}

/// An extension's checked plan for one sandbox, made by [`Extension::prepare`].
pub trait Prepared: std::fmt::Debug + Send {
    /// Brings the sandbox up. Errors carry an [`crate::error::ErrorKind`] when cancelled.
    fn provision(self: Box<Self>, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned>;

    /// What the sandbox will hold that no other live sandbox of the extension may hold at the
    /// same time; `create` refuses (unless forced) while a pending, provisioning or ready
    /// sandbox holds it, checking and recording under one lock.
    fn claim(&self) -> Option<Claim> {
        None
    }

    /// What the build will be made from (template digest, tool version, variable values with
    /// secrets redacted), for the record's provenance; `dirs` and `placement_host` are the
    /// allocated sandbox's. Called once the sandbox has an id, before it is provisioned.
    fn provenance(
        &self,
        dirs: &SandboxDirs,
        placement_host: &str,
    ) -> Option<crate::provenance::BuildProvenance> {
        let _ = (dirs, placement_host);
        None
    }

    /// Whether the provision can run on a build host of the pool (reached over SSH), using
    /// [`ProvisionContext::build_host`]; otherwise it is only ever placed on this machine.
    fn runs_on_build_hosts(&self) -> bool {
        false
    }

    /// Checks what the provision needs on this machine (a tool, say), when it may be placed
    /// here: a provision placed only on build hosts may go without. Called before anything is
    /// written.
    fn check_here(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for dyn Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

static BUILT_IN: [&dyn Extension; 1] = [&vm_packer::VmPacker];

/// Extensions a program built on this library adds to the built-in ones (see [`register`]).
static REGISTERED: std::sync::OnceLock<&'static [&'static dyn Extension]> =
    std::sync::OnceLock::new();

/// Adds extensions for the rest of the process, before anything looks one up; a program that
/// embeds sandboxer (`sandboxer::cli::main_with`) calls it once, first thing. Refuses an id
/// that is already taken, and a second call.
pub fn register(extensions: &'static [&'static dyn Extension]) -> anyhow::Result<()> {
    for (i, extension) in extensions.iter().enumerate() {
        let id = extension.id();
        anyhow::ensure!(
            BUILT_IN.iter().all(|built_in| built_in.id() != id)
                && extensions[..i].iter().all(|other| other.id() != id),
            "extension id {id} is registered twice"
        );
    }
    REGISTERED
        .set(extensions)
        .map_err(|_| anyhow::anyhow!("extensions are registered once per process"))
}

fn all() -> impl Iterator<Item = &'static dyn Extension> {
    BUILT_IN.iter().copied().chain(
        REGISTERED
            .get()
            .copied()
            .unwrap_or_default()
            .iter()
            .copied(),
    )
}

/// Looks up an extension (built in or registered) by id.
pub fn find(id: &str) -> Option<&'static dyn Extension> {
    all().find(|extension| extension.id() == id)
}

/// The ids of every extension, built-in ones first.
pub fn ids() -> impl Iterator<Item = &'static str> {
    all().map(|extension| extension.id())
}

/// Hashes a file for an artifact entry.
pub fn describe_artifact(path: &Utf8Path) -> anyhow::Result<Artifact> {
    use anyhow::Context as _;
    use sha2::{Digest as _, Sha256};
    let mut file = std::fs::File::open(path).with_context(|| format!("opening artifact {path}"))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("hashing artifact {path}"))?;
    Ok(Artifact {
        path: path.to_owned(),
        bytes,
        sha256: format!("{:x}", hasher.finalize()),
        build: None,
    })
}
