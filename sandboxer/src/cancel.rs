//! The cancellation flag shared by the signal thread and a running provision.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use rustix::process::Signal;

use crate::error::{Error, ErrorKind};
use crate::process;

/// Set once by whoever receives SIGINT/SIGTERM; read by everything else.
///
/// It also knows the process group of the running tool (Packer), so that a cancel reaches the
/// tool at once, even while the provision is blocked reading the tool's output.
#[derive(Debug, Default)]
pub struct Cancel {
    /// The signal number that asked for the cancel; 0 while not cancelled.
    signal: AtomicI32,
    /// The running tool's process group, while one runs.
    group: Mutex<Option<u32>>,
    /// When the first request came, so a stuck tool can be killed after a grace period.
    requested_at: Mutex<Option<Instant>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a cancel request and asks the running tool, if any, to stop (SIGINT to its group:
    /// Packer then cancels its own build and cleans up). A second request escalates to SIGKILL.
    pub fn request(&self, signal: i32) {
        let first = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first {
            *self
                .requested_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        }
        let group = *self
            .group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pgid) = group {
            let signal = if first { Signal::INT } else { Signal::KILL };
            let _ = process::signal_group(pgid, signal);
        }
    }

    /// The signal that requested the cancel, if any.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// When the cancel was first requested.
    pub fn requested_at(&self) -> Option<Instant> {
        *self
            .requested_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers the running tool's process group; if a cancel already came, passes it on now.
    pub fn watch_group(&self, pgid: u32) {
        *self
            .group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(pgid);
        if self.requested().is_some() {
            let _ = process::signal_group(pgid, Signal::INT);
        }
    }

    /// Forgets the process group once the tool has exited.
    pub fn unwatch_group(&self) {
        *self
            .group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// The error a cancelled operation returns: exit code 130 for SIGINT, 143 otherwise.
pub fn cancelled_error(signal: i32, doing: &str) -> anyhow::Error {
    let (kind, name) = if signal == signal_hook::consts::SIGINT {
        (ErrorKind::Interrupted, "SIGINT")
    } else {
        (ErrorKind::Terminated, "SIGTERM")
    };
    Error::new(kind, format!("cancelled by {name} {doing}")).into()
}
