//! The sandbox record: what `show --json` prints and what `sandboxes/<id>/record.json` holds.

use std::collections::BTreeMap;
use std::fmt;

use camino::Utf8PathBuf;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::duration::Age;
use crate::inputs::Value;
use crate::provenance::BuildProvenance;
use crate::ssh::SshTarget;

/// Bumped when the record's shape changes in a way old readers would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// A sandbox's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Allocated; provisioning has not started.
    Pending,
    Provisioning,
    Ready,
    Failed,
    Cancelled,
    TornDown,
    Expired,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Provisioning,
        State::Ready,
        State::Failed,
        State::Cancelled,
        State::TornDown,
        State::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Provisioning => "provisioning",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::TornDown => "torn-down",
            State::Expired => "expired",
        }
    }

    /// Whether the sandbox's working files are gone for good.
    pub fn is_gone(self) -> bool {
        matches!(self, State::TornDown | State::Expired)
    }

    /// Whether some process is (or should be) working on the sandbox right now.
    pub fn is_in_progress(self) -> bool {
        matches!(self, State::Pending | State::Provisioning)
    }
}

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = State::ALL.iter().map(|state| state.as_str()).collect();
                format!("unknown state {text:?} (states: {})", names.join(", "))
            })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the sandbox runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub host: String,
    /// The placement slot held while provisioning, when the host has a concurrency limit.
    pub slot: Option<u32>,
}

/// The process that works on the sandbox, so that another process can tell a live owner from a
/// dead one (pid reuse is ruled out by the start time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub pid_start_time: u64,
    pub hostname: String,
    /// The process group of the running Packer build, if one is running.
    pub pgid: Option<u32>,
    /// Start time of the process-group leader, checked before the group is signalled.
    pub pgid_start_time: Option<u64>,
}

/// A build placed on a build host of the pool, reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildHostRecord {
    /// The pool's name for the host.
    pub host: String,
    /// How it was reached (host, port, user, key path; never key contents).
    pub ssh: SshTarget,
    /// The host's work directory; the build's own is `<workdir>/<sandbox-id>`.
    pub workdir: Utf8PathBuf,
    /// Whether the build's directory is still on the host: while the build runs, after a
    /// failure under `on_failure = keep`, or when sandboxer died; teardown removes it.
    pub dir_left: bool,
    /// What runs on the host for the build, while it runs, so that gc and teardown can stop
    /// what a dead sandboxer left there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<RemoteProcesses>,
}

/// The processes of a build on its host, each with its start time (clock ticks since the host
/// booted), checked before it is signalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteProcesses {
    /// `/proc/sys/kernel/random/boot_id` on the host: a pid from before a reboot means nothing.
    pub boot_id: String,
    /// The agent holding the build's slot; it leads a process group of its own.
    pub holder_pid: u32,
    pub holder_start_time: Option<u64>,
    /// Packer's process group there, while Packer runs.
    #[serde(default)]
    pub pgid: Option<u32>,
    #[serde(default)]
    pub pgid_start_time: Option<u64>,
}

/// A file the provision produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: Utf8PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// The build that produced it (Packer's `TYPE.NAME`, or `BUILD.TYPE.NAME` for a named
    /// build block), when the tool said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// One build the provision's tool ran (for Packer, one per source), in the order it reported
/// them; its artifacts name it in their `build` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRun {
    /// Packer's name for it: `TYPE.NAME`, or `BUILD.TYPE.NAME` for a named build block.
    pub name: String,
    pub outcome: BuildOutcome,
}

/// How one build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildOutcome {
    Succeeded,
    Failed,
}

/// A port forwarded to the machine, as the port registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedPort {
    /// The port to connect to, on the machine's host.
    pub port: u16,
    /// The port it reaches inside the machine, when the registry says.
    pub guest_port: Option<u16>,
    /// What it is for ("web preview").
    pub purpose: String,
}

/// A kept artifact that `artifacts prune` deleted (or is deleting: the entry is written before
/// the file is removed, so a prune killed in between leaves a file that is still described, and
/// the next `gc` finishes the deletion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedArtifact {
    #[serde(flatten)]
    pub artifact: Artifact,
    pub pruned_at: Timestamp,
    /// Which rule chose it (`--keep-last 3`, `--older-than 30d`, `--max-total 100G`).
    pub reason: String,
}

/// Everything known about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema_version: u32,
    pub id: String,
    pub profile: String,
    pub profile_source: String,
    pub extension: String,
    pub mode: String,
    pub state: State,
    /// Why the sandbox is in its state, for failed, cancelled and expired sandboxes.
    pub state_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
    /// Inputs as resolved, sensitive values redacted; a list input is an array.
    pub inputs: BTreeMap<String, Value>,
    pub placement: Placement,
    pub owner: Option<Owner>,
    pub artifacts: Vec<Artifact>,
    /// The builds a successful provision ran (empty until then, and for modes that run none).
    #[serde(default)]
    pub builds: Vec<BuildRun>,
    /// The provision log (Packer's machine-readable output, redacted).
    pub log: Option<Utf8PathBuf>,
    /// What only one live sandbox may hold at a time (attach mode: `vm:NAME`), see
    /// `ext::Prepared::claim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// How to reach the machine over SSH (host, port, user, key path; never key contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshTarget>,
    /// Other ports forwarded to the machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_ports: Vec<ForwardedPort>,
    /// When teardown (or gc, at the TTL) removed the sandbox's working files; retention counts
    /// from here. Absent in records written before sandboxer kept history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_down_at: Option<Timestamp>,
    /// How long `gc` keeps the record once the sandbox is torn down, from its profile; when
    /// absent, the user's settings decide (default 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Age>,
    /// Artifacts `artifacts prune` deleted, kept in the record as history. Kept apart from
    /// `artifacts` so that a reader that predates pruning never takes them for files on disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_artifacts: Vec<PrunedArtifact>,
    /// What made the artifacts (template digest, tool version, variables; see `provenance`),
    /// for builds; written when the build is prepared and completed when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<BuildProvenance>,
    /// The sandbox this one was made like (`create --like`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<String>,
    /// The build host the sandbox was built on, when it is not this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_host: Option<BuildHostRecord>,
}

/// Reads a record from the bytes of a `record.json`, refusing a schema newer than this
/// sandboxer understands (it would misread it, and a rewrite would lose what it does not know).
pub fn parse(bytes: &[u8]) -> anyhow::Result<Record> {
    let record: Record = serde_json::from_slice(bytes)?;
    anyhow::ensure!(
        record.schema_version <= SCHEMA_VERSION,
        "schema version {} is newer than this sandboxer understands ({SCHEMA_VERSION}); upgrade sandboxer",
        record.schema_version
    );
    Ok(record)
}
