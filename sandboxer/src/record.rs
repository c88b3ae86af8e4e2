//! The sandbox record: what `show --json` prints and what `sandboxes/<id>/record.json` holds.

use std::collections::BTreeMap;
use std::fmt;

use camino::Utf8PathBuf;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::inputs::Value;
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
}
