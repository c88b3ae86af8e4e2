//! Placement: choosing a host among the candidates a profile allows (the one it names, or the
//! pool's hosts that carry its labels), at most `max_concurrent` provisions at once per host
//! across every sandboxer process on the machine, with a first-come first-served queue.
//!
//! Slots and queue tickets are files held with OS locks, so a process that dies (even by
//! SIGKILL) gives its slot or its place back without anyone cleaning up after it. A waiter
//! holds a ticket in the queue of every host it could use, so nobody who arrived later takes a
//! slot it could have had. A build host reached over SSH is asked for a slot of its own (see
//! `remote`) once a slot here is free: that one counts the builds of every control machine.
//!
//! Waiters do not poll on a clock: a released slot rings a doorbell (a rename in the host's
//! directory) and a ticket leaving a queue is a deletion, both of which wake the waiters
//! through inotify at once. A holder killed outright rings nothing, and a build host's slots
//! freed by another control machine ring nothing here, so waiters still look again after
//! [`FALLBACK_POLL`].

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use std::num::NonZeroU32;

use crate::cancel::Cancel;
use crate::error::{Error, ErrorKind, did_you_mean, usage};
use crate::files::open_lock_file;
use crate::pool::{self, Pool};
use crate::profile::PlacementPolicy;
use crate::remote::BuildHost;

/// The longest a queued `create` waits before it looks again when nothing woke it: a slot
/// whose holder was killed outright (no doorbell), or inotify unavailable.
pub const FALLBACK_POLL: Duration = Duration::from_millis(100);

/// The file a released slot renames into place to wake the waiters.
const DOORBELL: &str = "released";

/// How often a build host whose slots other control machines hold is asked again: each time
/// costs a connection.
const HELD_ELSEWHERE_RETRY: Duration = Duration::from_secs(1);

/// One host a create may be placed on.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// Slots here, across this machine's processes; no limit when `None`.
    pub max_concurrent: Option<u32>,
    /// A build host reached over SSH; `None` for this machine.
    pub remote: Option<BuildHost>,
}

/// The hosts a create may be placed on, in the pool's order: the one `pinned`
/// (`--input placement_host=NAME`), else every pool host carrying the policy's labels
/// (`pool = true`), else the host the policy names (a pool host as the pool file says, any
/// other name this machine under that name). A pool host's `max_concurrent` and the profile's
/// both apply (the smaller wins). Build hosts reached over SSH are left out when the provision
/// cannot run on one (`remote_ok`).
pub fn candidates(
    policy: &PlacementPolicy,
    profile_id: &str,
    pool: &Pool,
    pinned: Option<&str>,
    remote_ok: bool,
) -> anyhow::Result<Vec<Candidate>> {
    let profile_cap = policy.max_concurrent.map(NonZeroU32::get);
    let candidate = |host: &pool::Host| Candidate {
        name: host.name.clone(),
        max_concurrent: match (profile_cap, host.max_concurrent.map(NonZeroU32::get)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        remote: host.remote.as_ref().map(|ssh| BuildHost {
            name: host.name.clone(),
            ssh: ssh.clone(),
            slots: host.max_concurrent.map_or(0, NonZeroU32::get),
        }),
    };
    let this_machine = |name: &str| Candidate {
        name: name.to_owned(),
        max_concurrent: profile_cap,
        remote: None,
    };
    let only_here = |host: &str| {
        usage(format!(
            "profile {profile_id} runs only on this machine (in its mode), but build host `{host}` is reached over SSH; place it on `{}`",
            pool::LOCAL
        ))
    };
    let chosen = match pinned {
        Some(name) => {
            let found = match pool.find(name) {
                Some(host) => candidate(host),
                None if !policy.pool && (name == policy.host || name == pool::LOCAL) => {
                    this_machine(name)
                }
                None => {
                    let names = pool.names();
                    let hint = did_you_mean(name, names.iter().copied())
                        .map(|near| format!("; did you mean `{near}`?"))
                        .unwrap_or_default();
                    let known = if names.is_empty() {
                        "it lists none".to_owned()
                    } else {
                        format!("hosts: {}", names.join(", "))
                    };
                    return Err(usage(format!(
                        "--input placement_host={name}: {} has no host `{name}`{hint} ({known})",
                        pool.describe()
                    )));
                }
            };
            if policy.pool
                && let Some(host) = pool.find(name)
                && !host.carries(&policy.labels)
            {
                let missing: Vec<&str> = policy
                    .labels
                    .iter()
                    .filter(|label| !host.labels.contains(label))
                    .map(String::as_str)
                    .collect();
                return Err(usage(format!(
                    "--input placement_host={name}: host `{name}` lacks label {} that profile {profile_id} places by",
                    missing.join(", ")
                )));
            }
            if found.remote.is_some() && !remote_ok {
                return Err(only_here(name));
            }
            vec![found]
        }
        None if policy.pool => {
            if pool.hosts.is_empty() {
                return Err(usage(format!(
                    "profile {profile_id} places on the pool (`pool = true`), but there is {}: list build hosts in $SANDBOXER_HOSTS, $XDG_CONFIG_HOME/sandboxer/hosts.toml or the profile's `pool_file`",
                    if pool.path.is_some() {
                        format!("no host in {}", pool.describe())
                    } else {
                        pool.describe()
                    }
                )));
            }
            let eligible: Vec<Candidate> = pool
                .hosts
                .iter()
                .filter(|host| host.carries(&policy.labels))
                .map(candidate)
                .collect();
            if eligible.is_empty() {
                let hosts: Vec<String> = pool
                    .hosts
                    .iter()
                    .map(|host| format!("{} [{}]", host.name, host.labels.join(", ")))
                    .collect();
                return Err(usage(format!(
                    "no host in {} carries every label profile {profile_id} places by ({}); hosts: {}",
                    pool.describe(),
                    policy.labels.join(", "),
                    hosts.join(", ")
                )));
            }
            let usable: Vec<Candidate> = eligible
                .iter()
                .filter(|host| remote_ok || host.remote.is_none())
                .cloned()
                .collect();
            if usable.is_empty() {
                return Err(only_here(&eligible[0].name));
            }
            usable
        }
        None => match pool.find(&policy.host) {
            Some(host) => {
                let found = candidate(host);
                if found.remote.is_some() && !remote_ok {
                    return Err(only_here(&host.name));
                }
                vec![found]
            }
            None => vec![this_machine(&policy.host)],
        },
    };
    Ok(chosen)
}

/// What trying a host that has a free slot here came to.
#[derive(Debug)]
pub enum Attempt<T> {
    /// The host took the build.
    Took(T),
    /// The host is full after all: other control machines' builds hold its slots.
    HeldElsewhere,
    /// The host cannot be used now (it does not answer, refuses the login, lacks Packer): it
    /// is skipped for the rest of this placement.
    Unusable(anyhow::Error),
}

/// What a placement tells its caller while it looks.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Waiting in line: `place` 1 is next.
    InLine { place: usize },
    /// A host is skipped for the rest of this placement.
    Skipped {
        host: &'a str,
        why: &'a anyhow::Error,
    },
    /// A host's slots are held by other control machines; it is asked again now and then.
    HeldElsewhere { host: &'a str },
}

/// A host that took the build, with the slot held here.
#[derive(Debug)]
pub struct Placed<T> {
    /// Which of the candidates.
    pub index: usize,
    pub slot: Slot,
    pub taken: T,
}

/// Why a host could not take the build just now, for a `--no-wait` refusal.
#[derive(Debug, Clone, Copy)]
enum Busy {
    Waiting(usize),
    Full(u32),
    HeldElsewhere,
}

/// Places a create on one of `candidates`: the host with a free slot and the fewest provisions
/// running (as far as this machine knows; ties go to the earlier candidate), asked through
/// `attempt` while the slot here is held. Waits in line when every usable host is full, unless
/// `no_wait` (then [`ErrorKind::PlacementFull`]); fails when no host is usable at all. An
/// error from `attempt` (a cancel) ends the placement.
pub fn place<T>(
    state_root: &Utf8Path,
    candidates: &[Candidate],
    no_wait: bool,
    cancel: &Cancel,
    mut attempt: impl FnMut(&Candidate) -> anyhow::Result<Attempt<T>>,
    mut progress: impl FnMut(Progress<'_>),
) -> anyhow::Result<Placed<T>> {
    let mut placer = Placer::new(state_root, candidates)?;
    if let Some(placed) = placer.try_now(cancel, &mut attempt, &mut progress)? {
        return Ok(placed);
    }
    if no_wait {
        return Err(placer.full());
    }
    placer.wait(cancel, &mut attempt, &mut progress)
}

/// A placement in progress: what was learnt about the candidates so far (hosts skipped, hosts
/// held elsewhere, the tickets once in line) carries from a first look ([`Placer::try_now`]) to
/// the wait ([`Placer::wait`]), so that a create can look before its record exists and queue
/// after, without asking an unusable host twice.
pub struct Placer<'a> {
    candidates: &'a [Candidate],
    hosts: Vec<HostSlots>,
    unusable: Vec<Option<anyhow::Error>>,
    ask_again_at: Vec<Option<Instant>>,
    /// Why each host could not take the build at the last look.
    busy: Vec<(usize, Busy)>,
}

impl<'a> Placer<'a> {
    pub fn new(state_root: &Utf8Path, candidates: &'a [Candidate]) -> anyhow::Result<Placer<'a>> {
        anyhow::ensure!(!candidates.is_empty(), "no host to place on");
        let hosts: Vec<HostSlots> = candidates
            .iter()
            .map(|candidate| HostSlots::new(state_root, &candidate.name, candidate.max_concurrent))
            .collect();
        for host in &hosts {
            host.prepare()?;
        }
        Ok(Placer {
            candidates,
            unusable: candidates.iter().map(|_| None).collect(),
            ask_again_at: vec![None; candidates.len()],
            hosts,
            busy: Vec::new(),
        })
    }

    /// One look, without waiting: the placed build, or `None` when every usable host is busy
    /// (then [`Placer::full`] says why). Fails when no host is usable at all.
    pub fn try_now<T>(
        &mut self,
        cancel: &Cancel,
        attempt: &mut dyn FnMut(&Candidate) -> anyhow::Result<Attempt<T>>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> anyhow::Result<Option<Placed<T>>> {
        self.look(None, false, cancel, attempt, progress)
    }

    /// Why the last look found no host free: [`ErrorKind::PlacementFull`], for `--no-wait`.
    pub fn full(&self) -> anyhow::Error {
        full(self.candidates, &self.busy)
    }

    /// Waits in line (first come, first served, on every usable host at once) until a host
    /// takes the build; says the place in line as it changes.
    pub fn wait<T>(
        &mut self,
        cancel: &Cancel,
        attempt: &mut dyn FnMut(&Candidate) -> anyhow::Result<Attempt<T>>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> anyhow::Result<Placed<T>> {
        // Watching before the tickets are taken and the hosts looked at again, so that no
        // release slips in unnoticed between the look and the sleep.
        let wakeup = Wakeup::watch(&self.hosts);
        let tickets = take_tickets(&self.hosts)?;
        let mut last_place = None;
        // Woken by a change, the waiter only counts the tickets ahead; on a quiet tick it also
        // checks that their waiters live (a killed waiter leaves its ticket behind). Checking
        // every ticket on every wakeup would cost each of n waiters n opens per change.
        let mut woken_by_change = false;
        loop {
            if let Some(placed) =
                self.look(Some(&tickets), woken_by_change, cancel, attempt, progress)?
            {
                return Ok(placed);
            }
            let place = self
                .busy
                .iter()
                .map(|(_, busy)| match busy {
                    Busy::Waiting(ahead) => ahead + 1,
                    Busy::Full(_) | Busy::HeldElsewhere => 1,
                })
                .min()
                .unwrap_or(1);
            if last_place != Some(place) {
                progress(Progress::InLine { place });
                last_place = Some(place);
            }
            // Only where nobody is ahead does a released slot concern this waiter.
            let heads: Vec<usize> = self
                .busy
                .iter()
                .filter(|(_, busy)| !matches!(busy, Busy::Waiting(_)))
                .map(|(at, _)| *at)
                .collect();
            woken_by_change = wakeup.wait(&heads);
        }
    }

    /// Looks at every usable host once, the least busy first, and takes the first free one the
    /// host itself agrees to (`attempt`). `tickets`: this waiter's places in line, once it
    /// waits; `trust_queue`: count the tickets ahead without checking their waiters live.
    fn look<T>(
        &mut self,
        tickets: Option<&[Option<Ticket>]>,
        trust_queue: bool,
        cancel: &Cancel,
        attempt: &mut dyn FnMut(&Candidate) -> anyhow::Result<Attempt<T>>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> anyhow::Result<Option<Placed<T>>> {
        if let Some(signal) = cancel.requested() {
            return Err(crate::cancel::cancelled_error(
                signal,
                "while waiting for a placement slot",
            ));
        }
        let candidates = self.candidates;
        let mut order: Vec<usize> = (0..candidates.len())
            .filter(|at| self.unusable[*at].is_none())
            .collect();
        if order.len() > 1 {
            // Reading the kernel's lock table is only worth it when there is a choice.
            let locked = locked_inodes();
            order.sort_by_key(|at| (self.hosts[*at].held(&locked), *at));
        }
        self.busy.clear();
        for at in order {
            let host = &self.hosts[at];
            let mine = tickets
                .and_then(|tickets| tickets[at].as_ref())
                .map(|ticket| ticket.name.as_str());
            // A host without a limit has no queue: nobody waits for it.
            let ahead = match (host.max_concurrent, mine) {
                (None, _) => 0,
                (Some(_), Some(mine)) if trust_queue => host.tickets_before(mine)?.len(),
                (Some(_), _) => host.live_tickets_before(mine)?,
            };
            if ahead > 0 {
                self.busy.push((at, Busy::Waiting(ahead)));
                continue;
            }
            if self.ask_again_at[at].is_some_and(|when| Instant::now() < when) {
                self.busy.push((at, Busy::HeldElsewhere));
                continue;
            }
            let Some(slot) = host.try_slot()? else {
                self.busy
                    .push((at, Busy::Full(host.max_concurrent.unwrap_or(0))));
                continue;
            };
            match attempt(&candidates[at])? {
                Attempt::Took(taken) => {
                    return Ok(Some(Placed {
                        index: at,
                        slot,
                        taken,
                    }));
                }
                Attempt::HeldElsewhere => {
                    drop(slot);
                    if self.ask_again_at[at].is_none() {
                        progress(Progress::HeldElsewhere {
                            host: &candidates[at].name,
                        });
                    }
                    self.ask_again_at[at] = Some(Instant::now() + HELD_ELSEWHERE_RETRY);
                    self.busy.push((at, Busy::HeldElsewhere));
                }
                Attempt::Unusable(why) => {
                    drop(slot);
                    progress(Progress::Skipped {
                        host: &candidates[at].name,
                        why: &why,
                    });
                    self.unusable[at] = Some(why);
                }
            }
        }
        if self.unusable.iter().all(Option::is_some) {
            return Err(none_usable(candidates, &self.unusable));
        }
        Ok(None)
    }
}

/// What a waiter sleeps on: inotify on each host's queue (tickets leaving, which move everyone
/// up), and on each host's directory (doorbell renames, which only concern a waiter with
/// nobody ahead of it there).
struct Wakeup {
    /// One inotify instance watching every queue; `None` when inotify is unavailable.
    queues: Option<rustix::fd::OwnedFd>,
    /// Per host (with a limit), an inotify instance watching its directory.
    bells: Vec<Option<rustix::fd::OwnedFd>>,
}

impl Wakeup {
    fn watch(hosts: &[HostSlots]) -> Wakeup {
        use rustix::fs::inotify;
        let init =
            || inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok();
        let limited = || hosts.iter().filter(|host| host.max_concurrent.is_some());
        let queues = init().filter(|fd| {
            limited().all(|host| {
                inotify::add_watch(
                    fd,
                    host.dir.join("queue").as_str(),
                    inotify::WatchFlags::DELETE,
                )
                .is_ok()
            })
        });
        let bells = hosts
            .iter()
            .map(|host| {
                host.max_concurrent?;
                let fd = init()?;
                inotify::add_watch(&fd, host.dir.as_str(), inotify::WatchFlags::MOVED_TO).ok()?;
                Some(fd)
            })
            .collect();
        Wakeup { queues, bells }
    }

    /// Returns when a ticket left a queue, or a slot was released on one of `heads` (the
    /// hosts where nobody is ahead of this waiter): `true`; or after [`FALLBACK_POLL`]: `false`.
    fn wait(&self, heads: &[usize]) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let bells: Option<Vec<&rustix::fd::OwnedFd>> =
            heads.iter().map(|at| self.bells[*at].as_ref()).collect();
        let (Some(queues), Some(bells)) = (&self.queues, bells) else {
            std::thread::sleep(FALLBACK_POLL);
            return false;
        };
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::try_from(FALLBACK_POLL.as_nanos()).unwrap_or(100_000_000),
        };
        let watched: Vec<&rustix::fd::OwnedFd> = std::iter::once(queues).chain(bells).collect();
        let mut fds: Vec<PollFd<'_>> = watched
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => false,
            Ok(_) => {
                // What changed does not matter, only that something did.
                let mut buffer = [0u8; 4096];
                for fd in watched {
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

/// One ticket per host that has a queue (a limit), all of the same name, so the queues agree
/// on who came first.
fn take_tickets(hosts: &[HostSlots]) -> anyhow::Result<Vec<Option<Ticket>>> {
    let name = format!(
        "{}-{}",
        crate::registry::new_id(jiff::Timestamp::now()),
        std::process::id()
    );
    hosts
        .iter()
        .map(|host| match host.max_concurrent {
            Some(_) => Ticket::take(&host.dir.join("queue"), &name).map(Some),
            None => Ok(None),
        })
        .collect()
}

fn full(candidates: &[Candidate], busy: &[(usize, Busy)]) -> anyhow::Error {
    // In the pool's order, whatever order they were tried in.
    let mut busy = busy.to_vec();
    busy.sort_by_key(|(at, _)| *at);
    let message = match busy.as_slice() {
        [(at, why)] => {
            let name = &candidates[*at].name;
            match why {
                Busy::Waiting(waiting) => format!(
                    "placement host `{name}` has {waiting} waiting in line before you; retry later, or leave out --no-wait to queue"
                ),
                Busy::Full(max) => format!(
                    "placement host `{name}` is full ({max} of {max} slots busy); retry later, or leave out --no-wait to queue"
                ),
                Busy::HeldElsewhere => format!(
                    "placement host `{name}` is full (its slots are held by builds of other control machines); retry later, or leave out --no-wait to queue"
                ),
            }
        }
        _ => {
            let hosts: Vec<String> = busy
                .iter()
                .map(|(at, why)| {
                    let name = &candidates[*at].name;
                    match why {
                        Busy::Waiting(waiting) => format!("`{name}` has {waiting} waiting"),
                        Busy::Full(max) => format!("`{name}` is full ({max} of {max})"),
                        Busy::HeldElsewhere => {
                            format!("`{name}` is full (held by other control machines)")
                        }
                    }
                })
                .collect();
            format!(
                "every usable host is busy: {}; retry later, or leave out --no-wait to queue",
                hosts.join(", ")
            )
        }
    };
    Error::new(ErrorKind::PlacementFull, message).into()
}

fn none_usable(candidates: &[Candidate], unusable: &[Option<anyhow::Error>]) -> anyhow::Error {
    // Each reason names its host.
    let reasons: Vec<String> = unusable
        .iter()
        .flatten()
        .map(|why| format!("{why:#}"))
        .collect();
    let what = if candidates.len() == 1 {
        "the placement host could not be used"
    } else {
        "no host of the pool could be used"
    };
    Error::new(ErrorKind::Failed, format!("{what}: {}", reasons.join("; "))).into()
}

/// Inodes of the files someone holds an flock on, from `/proc/locks`: looking takes no lock,
/// so counting busy slots never gets in anyone's way.
fn locked_inodes() -> HashSet<u64> {
    let Ok(text) = fs::read_to_string("/proc/locks") else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|line| {
            // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters show "1: -> FLOCK ...".
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&"FLOCK") {
                return None;
            }
            fields.get(5)?.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

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

    /// How many of the host's slots are held now, by any process on this machine (`locked`:
    /// see [`locked_inodes`]); 0 for a host without a limit.
    pub fn held(&self, locked: &HashSet<u64>) -> usize {
        let Some(max) = self.max_concurrent else {
            return 0;
        };
        (0..max)
            .filter(|index| {
                fs::metadata(self.dir.join(format!("{index}.lock")))
                    .is_ok_and(|meta| locked.contains(&meta.ino()))
            })
            .count()
    }

    /// How many of the host's slots are held now, by any process on this machine.
    pub fn held_now(&self) -> usize {
        self.held(&locked_inodes())
    }

    /// A free slot now, if there is one (always, for a host without a limit).
    fn try_slot(&self) -> anyhow::Result<Option<Slot>> {
        match self.max_concurrent {
            None => Ok(Some(Slot::unlimited())),
            Some(max) => self.try_slots(max),
        }
    }

    fn prepare(&self) -> anyhow::Result<()> {
        if self.max_concurrent.is_none() {
            return Ok(());
        }
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

    /// Counts queue tickets that sort before `mine` (every ticket, for `None`) and whose owner
    /// is alive; removes tickets left by dead waiters.
    fn live_tickets_before(&self, mine: Option<&str>) -> anyhow::Result<usize> {
        let queue = self.dir.join("queue");
        // "~" sorts after every ticket name.
        let names = self.tickets_before(mine.unwrap_or("~"))?;
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
    /// Queues under `name`, which sorts by arrival time.
    fn take(queue: &Utf8Path, name: &str) -> anyhow::Result<Ticket> {
        let name = name.to_owned();
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
    use std::sync::Mutex;

    use super::*;

    fn state() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, root)
    }

    fn here(name: &str, max: Option<u32>) -> Candidate {
        Candidate {
            name: name.to_owned(),
            max_concurrent: max,
            remote: None,
        }
    }

    /// Places on `candidates`, every host taking the build (as this machine does).
    fn take(
        root: &Utf8Path,
        candidates: &[Candidate],
        no_wait: bool,
    ) -> anyhow::Result<Placed<String>> {
        place(
            root,
            candidates,
            no_wait,
            &Cancel::new(),
            |candidate| Ok(Attempt::Took(candidate.name.clone())),
            |_| {},
        )
    }

    #[test]
    fn slots_are_limited_and_released_on_drop() {
        let (_dir, root) = state();
        let hosts = [here("local", Some(2))];
        let a = take(&root, &hosts, true).unwrap();
        let b = take(&root, &hosts, true).unwrap();
        assert_ne!(a.slot.index, b.slot.index);
        let err = take(&root, &hosts, true).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::PlacementFull);
        assert_eq!(
            err.to_string(),
            "placement host `local` is full (2 of 2 slots busy); retry later, or leave out --no-wait to queue"
        );
        assert_eq!(HostSlots::new(&root, "local", Some(2)).held_now(), 2);
        drop(a);
        assert_eq!(HostSlots::new(&root, "local", Some(2)).held_now(), 1);
        assert!(take(&root, &hosts, true).is_ok());
    }

    #[test]
    fn no_limit_means_no_slot_files() {
        let (_dir, root) = state();
        let placed = take(&root, &[here("local", None)], true).unwrap();
        assert_eq!(placed.slot.index, None);
        assert!(!root.join("slots").exists());
    }

    #[test]
    fn the_host_with_the_fewest_running_builds_is_chosen_and_ties_go_to_the_first() {
        let (_dir, root) = state();
        let hosts = [
            here("b1", Some(2)),
            here("b2", Some(1)),
            here("b3", Some(1)),
        ];
        let first = take(&root, &hosts, true).unwrap();
        let second = take(&root, &hosts, true).unwrap();
        let third = take(&root, &hosts, true).unwrap();
        let fourth = take(&root, &hosts, true).unwrap();
        assert_eq!(
            [&first, &second, &third, &fourth].map(|placed| placed.taken.as_str()),
            ["b1", "b2", "b3", "b1"]
        );
        let err = take(&root, &hosts, true).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::PlacementFull);
        assert!(
            err.to_string()
                .starts_with("every usable host is busy: `b1` is full (2 of 2)"),
            "{err}"
        );
        drop(third);
        assert_eq!(take(&root, &hosts, true).unwrap().taken, "b3");
    }

    #[test]
    fn an_unusable_host_is_skipped_and_one_held_elsewhere_is_asked_again() {
        let (_dir, root) = state();
        let hosts = [
            here("down", Some(1)),
            here("busy", Some(1)),
            here("up", Some(1)),
        ];
        let asked = Mutex::new(Vec::new());
        let said = Mutex::new(Vec::new());
        let placed = place(
            &root,
            &hosts,
            false,
            &Cancel::new(),
            |candidate| {
                asked.lock().unwrap().push(candidate.name.clone());
                Ok(match candidate.name.as_str() {
                    "down" => Attempt::Unusable(anyhow::anyhow!("connection refused")),
                    "busy" => Attempt::HeldElsewhere,
                    _ => Attempt::Took(()),
                })
            },
            |event| said.lock().unwrap().push(format!("{event:?}")),
        )
        .unwrap();
        assert_eq!(placed.index, 2);
        assert_eq!(*asked.lock().unwrap(), ["down", "busy", "up"]);
        let said = said.lock().unwrap().join("\n");
        assert!(said.contains("Skipped { host: \"down\""), "{said}");
        assert!(said.contains("HeldElsewhere { host: \"busy\" }"), "{said}");

        let err = place(
            &root,
            &hosts[..1],
            false,
            &Cancel::new(),
            |_| {
                Ok(Attempt::<()>::Unusable(anyhow::anyhow!(
                    "connection refused"
                )))
            },
            |_| {},
        )
        .unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::Failed);
        assert_eq!(
            err.to_string(),
            "the placement host could not be used: connection refused"
        );
    }

    #[test]
    fn a_queued_waiter_reports_its_place_and_gets_the_slot() {
        let (_dir, root) = state();
        let hosts = [here("local", Some(1))];
        let held = take(&root, &hosts, true).unwrap();
        let waiter = {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut places = Vec::new();
                let placed = place(
                    &root,
                    &[here("local", Some(1))],
                    false,
                    &Cancel::new(),
                    |_| Ok(Attempt::Took(())),
                    |event| {
                        if let Progress::InLine { place } = event {
                            places.push(place);
                        }
                    },
                )
                .unwrap();
                (placed.slot.index, places)
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let err = take(&root, &hosts, true).unwrap_err();
        assert!(
            err.to_string().contains("has 1 waiting in line before you"),
            "{err}"
        );
        drop(held);
        let (index, places) = waiter.join().unwrap();
        assert_eq!(index, Some(0));
        assert_eq!(places, [1]);
    }

    #[test]
    fn a_pool_waiter_keeps_its_place_on_every_host_it_could_use() {
        let (_dir, root) = state();
        let pool = [here("b1", Some(1)), here("b2", Some(1))];
        let on_b1 = take(&root, &pool[..1], true).unwrap();
        let on_b2 = take(&root, &pool[1..], true).unwrap();
        let waiter = {
            let root = root.clone();
            std::thread::spawn(move || {
                let pool = [here("b1", Some(1)), here("b2", Some(1))];
                place(
                    &root,
                    &pool,
                    false,
                    &Cancel::new(),
                    |candidate| Ok(Attempt::Took(candidate.name.clone())),
                    |_| {},
                )
                .unwrap()
                .taken
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        // Whichever host frees up, the pool waiter came first there: a later create for that
        // host alone finds it waiting, or already holding the slot.
        drop(on_b2);
        let err = take(&root, &pool[1..], true).unwrap_err();
        assert_eq!(
            crate::error::kind_of(&err),
            ErrorKind::PlacementFull,
            "{err}"
        );
        assert_eq!(waiter.join().unwrap(), "b2");
        drop(on_b1);
    }

    #[test]
    fn a_release_rings_the_hosts_waiting_at_its_head_and_a_ticket_leaving_wakes_everyone() {
        let (_dir, root) = state();
        let hosts = [
            HostSlots::new(&root, "b1", Some(1)),
            HostSlots::new(&root, "b2", Some(1)),
        ];
        for host in &hosts {
            host.prepare().unwrap();
        }
        let held = hosts[1].try_slots(1).unwrap().unwrap();
        let wakeup = Wakeup::watch(&hosts);
        assert!(wakeup.queues.is_some() && wakeup.bells.iter().all(Option::is_some));
        // Nothing happened: only the fallback poll ends the wait.
        assert!(!wakeup.wait(&[1]));
        drop(held);
        // A waiter with someone ahead of it on b2 does not hear b2's bell...
        assert!(!wakeup.wait(&[0]));
        // ...one at the head of b2's queue does (the bell rang before it started to wait).
        let held = hosts[1].try_slots(1).unwrap().unwrap();
        drop(held);
        assert!(wakeup.wait(&[1]));
        assert!(!wakeup.wait(&[1]), "a ring is heard once");
        // A ticket leaving any queue moves everyone up.
        let tickets = take_tickets(&hosts).unwrap();
        assert!(!wakeup.wait(&[]));
        drop(tickets);
        assert!(wakeup.wait(&[]));
    }

    fn policy(text: &str) -> PlacementPolicy {
        let profile = format!(
            "id = \"profile.p\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n\n[placement]\n{text}"
        );
        crate::profile::parse(
            &profile,
            "p.toml",
            crate::profile::Source::Builtin("p.toml"),
        )
        .unwrap()
        .placement
    }

    fn pool() -> Pool {
        let text = r#"
[[host]]
name = "b1"
ssh = "ci@b1:22"
workdir = "/w"
max_concurrent = 2
labels = ["kvm"]

[[host]]
name = "local"
max_concurrent = 4

[[host]]
name = "b2"
ssh = "ci@b2:22"
workdir = "/w"
labels = ["kvm", "big"]
"#;
        Pool {
            path: Some("hosts.toml".into()),
            hosts: crate::pool::parse(text, "hosts.toml", Utf8Path::new("/")).unwrap(),
        }
    }

    fn names(candidates: &[Candidate]) -> Vec<&str> {
        candidates
            .iter()
            .map(|candidate| candidate.name.as_str())
            .collect()
    }

    #[test]
    fn candidates_follow_the_policy_the_pool_and_a_pinned_host() {
        let pool = pool();
        let kvm = policy("pool = true\nlabels = [\"kvm\"]\nmax_concurrent = 1\n");
        let found = candidates(&kvm, "p", &pool, None, true).unwrap();
        assert_eq!(names(&found), ["b1", "b2"]);
        assert_eq!(found[0].max_concurrent, Some(1), "the smaller cap wins");
        assert_eq!(found[1].max_concurrent, Some(1));
        assert_eq!(
            found[0].remote.as_ref().unwrap().slots,
            2,
            "the host's own slots"
        );
        assert_eq!(
            names(&candidates(&policy("pool = true\n"), "p", &pool, None, true).unwrap()),
            ["b1", "local", "b2"]
        );
        assert_eq!(
            names(&candidates(&policy("pool = true\n"), "p", &pool, None, false).unwrap()),
            ["local"]
        );
        assert_eq!(
            names(&candidates(&kvm, "p", &pool, Some("b2"), true).unwrap()),
            ["b2"]
        );
        // A named host the pool lists is reached as it says; any other is this machine.
        let named = candidates(&policy("host = \"b1\"\n"), "p", &pool, None, true).unwrap();
        assert!(named[0].remote.is_some());
        let label = candidates(
            &policy("host = \"hv1\"\nmax_concurrent = 3\n"),
            "p",
            &pool,
            None,
            true,
        )
        .unwrap();
        assert_eq!(
            (
                label[0].name.as_str(),
                label[0].max_concurrent,
                label[0].remote.is_none()
            ),
            ("hv1", Some(3), true)
        );
        assert_eq!(
            names(
                &candidates(&policy("host = \"hv1\"\n"), "p", &pool, Some("local"), true).unwrap()
            ),
            ["local"]
        );

        let errors = [
            (
                candidates(&kvm, "p", &pool, Some("local"), true),
                "--input placement_host=local: host `local` lacks label kvm that profile p places by",
            ),
            (
                candidates(&kvm, "p", &pool, Some("b3"), true),
                "--input placement_host=b3: pool file hosts.toml has no host `b3` (hosts: b1, local, b2)",
            ),
            (
                candidates(
                    &policy("pool = true\nlabels = [\"gpu\"]\n"),
                    "p",
                    &pool,
                    None,
                    true,
                ),
                "no host in pool file hosts.toml carries every label profile p places by (gpu); hosts: b1 [kvm], local [], b2 [kvm, big]",
            ),
            (
                candidates(&policy("pool = true\n"), "p", &Pool::default(), None, true),
                "profile p places on the pool (`pool = true`), but there is no pool file",
            ),
            (
                candidates(&kvm, "p", &pool, None, false),
                "profile p runs only on this machine (in its mode), but build host `b1` is reached over SSH",
            ),
        ];
        for (result, expected) in errors {
            let err = result.unwrap_err();
            assert_eq!(crate::error::kind_of(&err), ErrorKind::Usage);
            assert!(
                err.to_string().starts_with(expected),
                "{err}\nexpected: {expected}"
            );
        }
    }

    #[test]
    fn a_cancel_ends_the_wait() {
        let (_dir, root) = state();
        let hosts = [here("local", Some(1))];
        let _held = take(&root, &hosts, true).unwrap();
        let cancel = Cancel::new();
        cancel.request(signal_hook::consts::SIGINT);
        let err = place(
            &root,
            &hosts,
            false,
            &cancel,
            |_| Ok(Attempt::Took(())),
            |_| {},
        )
        .unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::Interrupted);
    }
}
