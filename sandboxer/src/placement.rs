//! Placement slots: at most `max_concurrent` provisions at once per placement host, across
//! every sandboxer process on the machine, with a first-come first-served queue.
//!
//! Slots and queue tickets are files held with OS locks, so a process that dies (even by
//! SIGKILL) gives its slot or its place back without anyone cleaning up after it.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::DirBuilderExt as _;
use std::time::Duration;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use crate::cancel::Cancel;
use crate::error::{Error, ErrorKind};
use crate::files::open_lock_file;

/// How often a queued `create` looks again.
const POLL: Duration = Duration::from_millis(100);

/// A held slot; released when dropped or when the process dies.
#[derive(Debug)]
pub struct Slot {
    /// `None` when the host has no limit.
    pub index: Option<u32>,
    _file: Option<File>,
}

impl Slot {
    fn unlimited() -> Slot {
        Slot {
            index: None,
            _file: None,
        }
    }
}

/// The slots of one placement host: `slots/<host>/<n>.lock` and `slots/<host>/queue/`.
#[derive(Debug)]
pub struct HostSlots {
    name: String,
    dir: Utf8PathBuf,
    max_concurrent: Option<u32>,
}

impl HostSlots {
    pub fn new(state_root: &Utf8Path, name: &str, max_concurrent: Option<u32>) -> HostSlots {
        HostSlots {
            name: name.to_owned(),
            dir: state_root.join("slots").join(name),
            max_concurrent,
        }
    }

    /// Takes a free slot now, or fails with [`ErrorKind::PlacementFull`] (also when others are
    /// already queued: jumping the queue would be unfair to them).
    pub fn try_acquire(&self) -> anyhow::Result<Slot> {
        let Some(max) = self.max_concurrent else {
            return Ok(Slot::unlimited());
        };
        self.prepare()?;
        let waiting = self.live_tickets_before(None)?;
        if waiting == 0
            && let Some(slot) = self.try_slots(max)?
        {
            return Ok(slot);
        }
        let why = if waiting == 0 {
            format!("is full ({max} of {max} slots busy)")
        } else {
            // A slot may be free this instant, but it is theirs.
            format!("has {waiting} waiting in line before you")
        };
        Err(Error::new(
            ErrorKind::PlacementFull,
            format!(
                "placement host `{}` {why}; retry later, or leave out --no-wait to queue",
                self.name
            ),
        )
        .into())
    }

    /// Waits in line for a slot. `on_wait(place, ahead)` is called whenever the caller's place
    /// changes (1 = next in line). Returns early with a cancel error if `cancel` is requested.
    pub fn acquire(&self, cancel: &Cancel, mut on_wait: impl FnMut(usize)) -> anyhow::Result<Slot> {
        let Some(max) = self.max_concurrent else {
            return Ok(Slot::unlimited());
        };
        self.prepare()?;
        let ticket = Ticket::take(&self.dir.join("queue"))?;
        let mut last_place = None;
        loop {
            if let Some(signal) = cancel.requested() {
                return Err(crate::cancel::cancelled_error(
                    signal,
                    "while waiting for a placement slot",
                ));
            }
            let ahead = self.live_tickets_before(Some(&ticket.name))?;
            if ahead == 0
                && let Some(slot) = self.try_slots(max)?
            {
                drop(ticket);
                return Ok(slot);
            }
            let place = ahead + 1;
            if last_place != Some(place) {
                on_wait(place);
                last_place = Some(place);
            }
            std::thread::sleep(POLL);
        }
    }

    fn prepare(&self) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.dir.join("queue"))
            .with_context(|| format!("creating {}", self.dir))
    }

    fn try_slots(&self, max: u32) -> anyhow::Result<Option<Slot>> {
        for index in 0..max {
            let file = open_lock_file(&self.dir.join(format!("{index}.lock")))?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Some(Slot {
                        index: Some(index),
                        _file: Some(file),
                    }));
                }
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(err)) => {
                    return Err(err)
                        .with_context(|| format!("locking slot {index} of {}", self.name));
                }
            }
        }
        Ok(None)
    }

    /// Counts queue tickets that sort before `mine` and whose owner is alive; removes tickets
    /// left by dead waiters.
    fn live_tickets_before(&self, mine: Option<&str>) -> anyhow::Result<usize> {
        let queue = self.dir.join("queue");
        let mut names: Vec<String> = Vec::new();
        for entry in queue
            .read_dir_utf8()
            .with_context(|| format!("reading {queue}"))?
        {
            let name = entry
                .with_context(|| format!("reading {queue}"))?
                .file_name()
                .to_owned();
            if !name.starts_with('.') && mine.is_none_or(|mine| name.as_str() < mine) {
                names.push(name);
            }
        }
        let mut live = 0;
        for name in names {
            let path = queue.join(&name);
            let Ok(file) = OpenOptions::new().write(true).open(&path) else {
                continue; // its owner got its slot and removed it meanwhile
            };
            match file.try_lock() {
                Err(fs::TryLockError::WouldBlock) => live += 1,
                // Nobody holds it: its waiter died. Remove it while we hold its lock.
                Ok(()) => {
                    let _ = fs::remove_file(&path);
                }
                Err(fs::TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("locking {path}"));
                }
            }
        }
        Ok(live)
    }
}

/// A place in the queue: a file named in arrival order, locked by its waiter.
struct Ticket {
    name: String,
    path: Utf8PathBuf,
    _file: File,
}

impl Ticket {
    fn take(queue: &Utf8Path) -> anyhow::Result<Ticket> {
        let name = format!(
            "{}-{}",
            crate::registry::new_id(jiff::Timestamp::now()),
            std::process::id()
        );
        // Locked under a hidden name first, so nobody can mistake it for a dead waiter's ticket.
        let hidden = queue.join(format!(".{name}"));
        let file = open_lock_file(&hidden)?;
        file.lock().with_context(|| format!("locking {hidden}"))?;
        let path = queue.join(&name);
        fs::rename(&hidden, &path).with_context(|| format!("queueing {path}"))?;
        Ok(Ticket {
            name,
            path,
            _file: file,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(max: Option<u32>) -> (tempfile::TempDir, HostSlots) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, HostSlots::new(&root, "local", max))
    }

    #[test]
    fn slots_are_limited_and_released_on_drop() {
        let (_dir, host) = host(Some(2));
        let a = host.try_acquire().unwrap();
        let b = host.try_acquire().unwrap();
        assert_ne!(a.index, b.index);
        let err = host.try_acquire().unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::PlacementFull);
        drop(a);
        assert!(host.try_acquire().is_ok());
    }

    #[test]
    fn no_limit_means_no_slot_files() {
        let (_dir, host) = host(None);
        assert_eq!(host.try_acquire().unwrap().index, None);
    }

    #[test]
    fn a_queued_waiter_reports_its_place_and_gets_the_slot() {
        let (_dir, host) = host(Some(1));
        let held = host.try_acquire().unwrap();
        let host = std::sync::Arc::new(host);
        let waiter = {
            let host = std::sync::Arc::clone(&host);
            std::thread::spawn(move || {
                let mut places = Vec::new();
                let slot = host
                    .acquire(&Cancel::new(), |place| places.push(place))
                    .unwrap();
                (slot.index, places)
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        let (index, places) = waiter.join().unwrap();
        assert_eq!(index, Some(0));
        assert_eq!(places, [1]);
    }

    #[test]
    fn a_cancel_ends_the_wait() {
        let (_dir, host) = host(Some(1));
        let _held = host.try_acquire().unwrap();
        let cancel = Cancel::new();
        cancel.request(signal_hook::consts::SIGINT);
        let err = host.acquire(&cancel, |_| {}).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::Interrupted);
    }
}
