//! The extension SDK: the `Extension` trait every kind of sandbox implements, and the built-ins.

pub mod vm_packer;

use camino::{Utf8Path, Utf8PathBuf};

use crate::cancel::Cancel;
use crate::inputs::{InputSchema, Inputs};
use crate::progress::Sink;
use crate::record::{Artifact, Record};
use crate::registry::SandboxDirs;

/// Facts about the host that extensions may need, gathered once by the caller.
#[derive(Debug, Clone)]
pub struct Host {
    /// Where relative paths in inputs are resolved.
    pub cwd: Utf8PathBuf,
    /// Where extensions may cache things across sandboxes (bundled files, tool versions).
    pub cache_dir: Utf8PathBuf,
    /// An explicit Packer executable (`$SANDBOXER_PACKER`); otherwise `packer` on PATH.
    pub packer: Option<Utf8PathBuf>,
    /// How long a cancelled tool may take to clean up before it is killed.
    pub cancel_timeout: std::time::Duration,
}

/// What a provision gets to work with.
pub struct ProvisionContext<'a> {
    pub sandbox_id: &'a str,
    pub inputs: &'a Inputs,
    pub dirs: &'a SandboxDirs,
    pub placement_host: &'a str,
    pub on_failure: OnFailure,
    pub host: &'a Host,
    /// Where to report progress; extensions never print.
    pub progress: &'a mut dyn Sink,
    /// Polled between steps; a running tool is signalled through it directly.
    pub cancel: &'a Cancel,
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

/// What a successful provision produced.
#[derive(Debug, Default)]
pub struct Provisioned {
    pub artifacts: Vec<Artifact>,
}

/// One kind of sandbox.
///
/// Extensions report through the progress sink and return errors with context; they never
/// print, never exit the process, and never touch another sandbox's files.
pub trait Extension: Sync {
    /// The id profiles use, e.g. `ext.vm-packer`.
    fn id(&self) -> &'static str;

    /// One line for `profiles show`.
    fn summary(&self) -> &'static str;

    /// Every input the extension accepts.
    fn input_schema(&self) -> &'static InputSchema;

    /// Checks resolved inputs before a sandbox is allocated, marking inputs that turn out to be
    /// sensitive (so that nothing about the sandbox is written with them in clear).
    fn prepare(&self, inputs: &mut Inputs, host: &Host) -> anyhow::Result<()>;

    /// Brings the sandbox up. Errors carry an [`crate::error::ErrorKind`] when cancelled.
    fn provision(&self, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned>;

    /// Removes what the sandbox holds, keeping what the extension promises to keep (updating
    /// `record.artifacts` to say where it went). Must be idempotent.
    fn teardown(&self, record: &mut Record, dirs: &SandboxDirs) -> anyhow::Result<()>;
}

impl std::fmt::Debug for dyn Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

static BUILT_IN: [&dyn Extension; 1] = [&vm_packer::VmPacker];

/// Looks up a built-in extension by id.
pub fn find(id: &str) -> Option<&'static dyn Extension> {
    BUILT_IN
        .iter()
        .copied()
        .find(|extension| extension.id() == id)
}

/// The ids of all built-in extensions.
pub fn ids() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|extension| extension.id())
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
    })
}
