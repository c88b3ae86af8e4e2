//! The cancellation flag shared by the signal thread and a running provision, and the running
//! tool it passes a cancel on to: a process group here, or one on a build host ([`Stopper`]).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustix::process::Signal;

use crate::error::{Error, ErrorKind};
use crate::process;

/// Passes signals on to a running tool's processes, wherever they run.
pub trait Stopper: Send + Sync + std::fmt::Debug {
    /// Sends `signal` to every process of the tool. Must return at once (it is called from the
    /// signal thread): anything slow, such as reaching a build host, happens elsewhere.
    fn signal(&self, signal: Signal);
}

/// A process group on this machine.
#[derive(Debug)]
struct LocalGroup(u32);

impl Stopper for LocalGroup {
    fn signal(&self, signal: Signal) {
        let _ = process::signal_group(self.0, signal);
    }
}

/// Set once by whoever receives SIGINT/SIGTERM; read by everything else.
///
/// It also knows the running tool (Packer's process group, here or on a build host), so that a
/// cancel reaches the tool at once, even while the provision is blocked reading its output.
#[derive(Debug, Default)]
pub struct Cancel {
    /// The signal number that asked for the cancel; 0 while not cancelled.
    signal: AtomicI32,
    /// The running tool, while one runs.
    group: Mutex<Option<Arc<dyn Stopper>>>,
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
        let group = self
            .group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(group) = group {
            group.signal(if first { Signal::INT } else { Signal::KILL });
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
        self.watch(Arc::new(LocalGroup(pgid)));
    }

    /// Registers the running tool, wherever it runs; if a cancel already came, passes it on now.
    pub fn watch(&self, group: Arc<dyn Stopper>) {
        *self
            .group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&group));
        if self.requested().is_some() {
            group.signal(Signal::INT);
        }
    }

    /// Forgets the tool once it has exited.
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
