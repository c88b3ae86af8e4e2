//! Placement slots: at most `max_concurrent` provisions at once per placement host, across
//! every sandboxer process on the machine, with a first-come first-served queue.
//!
//! Slots and queue tickets are files held with OS locks, so a process that dies (even by
//! SIGKILL) gives its slot or its place back without anyone cleaning up after it.
//!
//! Waiters do not poll on a clock: a released slot rings a doorbell (a rename in the host's
//! directory) and a ticket leaving the queue is a deletion, both of which wake every waiter
//! through inotify at once. A holder killed outright rings nothing, so waiters still look
//! again after [`FALLBACK_POLL`].

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::DirBuilderExt as _;
use std::time::Duration;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use crate::cancel::Cancel;
use crate::error::{Error, ErrorKind};
use crate::files::open_lock_file;

/// The longest a queued `create` waits before it looks again when nothing woke it: a slot
/// whose holder was killed outright (no doorbell), or inotify unavailable.
pub const FALLBACK_POLL: Duration = Duration::from_millis(100);

/// The file a released slot renames into place to wake the waiters.
const DOORBELL: &str = "released";

/// A held slot; released when dropped or when the process dies.
#[derive(Debug)]
pub struct Slot {
    /// `None` when the host has no limit.
    pub index: Option<u32>,
    file: Option<File>,
    /// The host's directory, whose doorbell the release rings.
    dir: Option<Utf8PathBuf>,
}

impl Slot {
    fn unlimited() -> Slot {
        Slot {
            index: None,
            file: None,
            dir: None,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Unlocked first, so that whoever the bell wakes finds the slot free.
        drop(self.file.take());
        if let Some(dir) = &self.dir {
            ring(dir);
        }
    }
}

/// Wakes the waiters of a host: a rename into its directory, which is what they watch for.
/// Best effort: a waiter that misses it looks again after [`FALLBACK_POLL`].
fn ring(dir: &Utf8Path) {
    let pending = dir.join(format!(".{DOORBELL}-{}", std::process::id()));
    if fs::write(&pending, b"").is_ok() && fs::rename(&pending, dir.join(DOORBELL)).is_err() {
        let _ = fs::remove_file(&pending);
    }
}

/// What a waiter sleeps on: inotify on the host's directory (doorbell renames, which only the
/// head of the queue cares about) and on its queue (tickets leaving, which move everyone up).
struct Wakeup {
    bell: Option<rustix::fd::OwnedFd>,
    queue: Option<rustix::fd::OwnedFd>,
}

impl Wakeup {
    /// Set up before the waiter first looks at the slots, so no release can slip in between.
    fn watch(dir: &Utf8Path) -> Wakeup {
        use rustix::fs::inotify;
        let watch = |path: &Utf8Path, what: inotify::WatchFlags| {
            let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                .ok()?;
            inotify::add_watch(&fd, path.as_str(), what).ok()?;
            Some(fd)
        };
        Wakeup {
            bell: watch(dir, inotify::WatchFlags::MOVED_TO),
            queue: watch(&dir.join("queue"), inotify::WatchFlags::DELETE),
        }
    }

    /// Returns when a ticket left the queue (or, for the head of the queue, a slot was released):
    /// `true`; or after [`FALLBACK_POLL`]: `false`.
    fn wait(&self, head: bool) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let (Some(bell), Some(queue)) = (&self.bell, &self.queue) else {
            std::thread::sleep(FALLBACK_POLL);
            return false;
        };
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::try_from(FALLBACK_POLL.as_nanos()).unwrap_or(100_000_000),
        };
        let mut fds = [
            PollFd::new(queue, PollFlags::IN),
            PollFd::new(bell, PollFlags::IN),
        ];
        let watched = if head { 2 } else { 1 };
        match rustix::event::poll(&mut fds[..watched], Some(&timeout)) {
            Ok(0) => false,
            Ok(_) => {
                // What changed does not matter, only that something did.
                let mut buffer = [0u8; 4096];
                for fd in [queue, bell].into_iter().take(watched) {
                    while matches!(rustix::io::read(fd, &mut buffer), Ok(read) if read > 0) {}
                }
                true
            }
            Err(_) => {
                std::thread::sleep(FALLBACK_POLL);
                false
            }
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
        let wakeup = Wakeup::watch(&self.dir);
        let ticket = Ticket::take(&self.dir.join("queue"))?;
        let mut last_place = None;
        // Woken by a change, the waiter only counts the tickets ahead; on a quiet tick it also
        // checks that their waiters live (a killed waiter leaves its ticket behind). Checking
        // every ticket on every wakeup would cost each of n waiters n opens per change.
        let mut woken_by_change = false;
        loop {
            if let Some(signal) = cancel.requested() {
                return Err(crate::cancel::cancelled_error(
                    signal,
                    "while waiting for a placement slot",
                ));
            }
            let ahead = if woken_by_change {
                self.tickets_before(&ticket.name)?.len()
            } else {
                self.live_tickets_before(Some(&ticket.name))?
            };
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
            woken_by_change = wakeup.wait(ahead == 0);
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
                        file: Some(file),
                        dir: Some(self.dir.clone()),
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

    /// Names of the queue tickets that sort before `mine`, live or not.
    fn tickets_before(&self, mine: &str) -> anyhow::Result<Vec<String>> {
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
            if !name.starts_with('.') && name.as_str() < mine {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Counts queue tickets that sort before `mine` and whose owner is alive; removes tickets
    /// left by dead waiters.
    fn live_tickets_before(&self, mine: Option<&str>) -> anyhow::Result<usize> {
        let queue = self.dir.join("queue");
        let names = match mine {
            Some(mine) => self.tickets_before(mine)?,
            None => self.tickets_before("~")?, // sorts after every ticket name
        };
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
