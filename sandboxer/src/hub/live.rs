//! Delivery during a create, in two stages off the build's thread: a spooler (a
//! [`Background`] sink) makes each published event durable in the sandbox's spool and hands it
//! to a sender thread, which posts small batches to State Hub — a few requests a second at
//! most, retrying with backoff — and then replays spools older creates left behind.
//!
//! [`Live::finish`] waits for the last events only while State Hub keeps up, and never past
//! its deadline; whatever is still undelivered then waits in the spool.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use super::courier::{Attempt, Backoff, Courier};
use super::spool::{self, Entry, Spool};
use super::{Endpoint, Health, MAX_BATCH, Settings, deliver_batch};
use crate::progress::cloudevents::envelope;
use crate::progress::{Background, BatchSink, Event, Kind, Sink};

/// At least this long between two requests while the build runs ("a few a second").
const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// A State Hub that takes longer than this to answer is slow: a create then does not wait
/// for it at the end.
const SLOW: Duration = Duration::from_millis(500);

/// An event in the sender's outbox.
struct Outgoing {
    entry: Entry,
    /// A later event of the same kind may replace it before it is sent (places in line,
    /// heartbeats).
    supersedable: bool,
}

#[derive(Default)]
struct State {
    outbox: VecDeque<Outgoing>,
    /// How many events at the front of the outbox are being sent right now.
    in_flight: usize,
    in_flight_since: Option<Instant>,
    /// No more events will come: send what is left at once.
    closing: bool,
    /// State Hub's last answer failed or took longer than [`SLOW`].
    slow: bool,
    /// State Hub refused us; nothing more is sent in this run.
    stopped: bool,
    /// Spools older creates left behind may still wait to be replayed.
    older_pending: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The State Hub sink of one create.
pub struct Live {
    spooler: Background<Spooler>,
    shared: Arc<Shared>,
    spool_path: Utf8PathBuf,
    settings: Settings,
}

impl Live {
    /// Opens the sandbox's spool and starts the spooler and the sender.
    pub fn start(
        settings: &Settings,
        endpoint: &Endpoint,
        state_dir: &Utf8Path,
        sandbox: &str,
    ) -> anyhow::Result<Live> {
        let spool = Spool::try_open(state_dir, sandbox)?.ok_or_else(|| {
            anyhow::anyhow!("the spool of {sandbox} is in use by another process")
        })?;
        let spool_path = spool.path().to_owned();
        let spool = Arc::new(Mutex::new(spool));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                older_pending: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let courier = Courier::new(endpoint)?;
        let sender = Sender {
            courier,
            shared: Arc::clone(&shared),
            spool: Arc::clone(&spool),
            state_dir: state_dir.to_owned(),
            settings: settings.clone(),
            backoff: Backoff::default(),
            next_at: Instant::now(),
            warned_retrying: false,
            in_error: false,
        };
        // Detached: a create never waits for it beyond its deadline; it dies with the process.
        std::thread::Builder::new()
            .name("state-hub-sender".to_owned())
            .spawn(move || sender.run())?;
        let spooler = Background::spawn(Spooler {
            spool,
            shared: Arc::clone(&shared),
            settings: settings.clone(),
            failed: false,
        })?;
        Ok(Live {
            spooler,
            shared,
            spool_path,
            settings: settings.clone(),
        })
    }

    /// Spools what is still queued, then waits until State Hub has everything, State Hub
    /// proved slow or refused us, or `deadline` passes; returns how many events were left
    /// undelivered (they stay in the spool).
    pub fn finish(self, deadline: Instant) -> usize {
        let Live {
            spooler,
            shared,
            spool_path,
            settings,
        } = self;
        let _ = spooler.finish();
        let mut state = shared.lock();
        state.closing = true;
        shared.changed.notify_all();
        loop {
            let outstanding_too_long = state
                .in_flight_since
                .is_some_and(|since| since.elapsed() > SLOW);
            let now = Instant::now();
            if (state.outbox.is_empty() && !state.older_pending)
                || state.stopped
                || state.slow
                || outstanding_too_long
                || now >= deadline
            {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(20));
            state = shared
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        let left = state.outbox.len();
        drop(state);
        if left == 0 {
            // Everything arrived: nothing to keep. The sender holds the file's lock until the
            // process ends; removing the name is safe, nothing appends to it any more.
            let _ = std::fs::remove_file(&spool_path);
        } else {
            settings.warn(&format!(
                "{left} State Hub event(s) were not delivered in time; they wait in the spool and go with the next create or `sandboxer hub flush` (see `sandboxer hub status`)"
            ));
        }
        left
    }
}

impl Sink for Live {
    fn emit(&mut self, event: &Event) {
        self.spooler.emit(event);
    }
}

/// Stage one: encodes, spools (fsynced) and hands events to the sender.
struct Spooler {
    spool: Arc<Mutex<Spool>>,
    shared: Arc<Shared>,
    settings: Settings,
    failed: bool,
}

impl BatchSink for Spooler {
    fn wants(event: &Event) -> bool {
        matches!(event, Event::Published(_))
    }

    fn may_drop(event: &Event) -> bool {
        matches!(
            event,
            Event::Published(published)
                if matches!(published.kind, Kind::Queued { .. } | Kind::Heartbeat { .. })
        )
    }

    fn emit_batch(&mut self, events: &[Event]) {
        let mut outgoing = Vec::with_capacity(events.len());
        for event in events {
            let Event::Published(published) = event else {
                continue;
            };
            outgoing.push(Outgoing {
                entry: Entry {
                    seq: published.seq,
                    json: envelope(published).to_string(),
                },
                supersedable: matches!(
                    published.kind,
                    Kind::Queued { .. } | Kind::Heartbeat { .. }
                ),
            });
        }
        let entries: Vec<Entry> = outgoing.iter().map(|o| o.entry.clone()).collect();
        let spooled = self
            .spool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .append_events(&entries);
        if let Err(err) = spooled
            && !self.failed
        {
            self.failed = true;
            self.settings.warn(&format!(
                "{err:#}; State Hub events are still sent, but those not delivered by the end are lost"
            ));
        }
        let mut state = self.shared.lock();
        for event in outgoing {
            // Coalesce: a newer place in line or heartbeat replaces an older one not yet sent.
            let last = state.outbox.len();
            if event.supersedable
                && last > state.in_flight
                && let Some(previous) = state.outbox.back_mut()
                && previous.supersedable
                && same_type(&previous.entry.json, &event.entry.json)
            {
                *previous = event;
                continue;
            }
            state.outbox.push_back(event);
        }
        self.shared.changed.notify_all();
    }
}

fn same_type(a: &str, b: &str) -> bool {
    let kind = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|value| value.get("type")?.as_str().map(str::to_owned))
    };
    kind(a) == kind(b)
}

/// Stage two: posts the outbox, then replays older spools.
struct Sender {
    courier: Courier,
    shared: Arc<Shared>,
    spool: Arc<Mutex<Spool>>,
    state_dir: Utf8PathBuf,
    settings: Settings,
    backoff: Backoff,
    /// No request before this (rate limit, or backoff after a failure).
    next_at: Instant,
    warned_retrying: bool,
    /// The last attempt failed; the next success is worth noting in the health file.
    in_error: bool,
}

impl Sender {
    fn run(mut self) {
        let mut older: Option<VecDeque<Utf8PathBuf>> = None;
        loop {
            let mut state = self.shared.lock();
            if state.stopped {
                return;
            }
            if state.outbox.is_empty() {
                // Nothing of ours to send: replay what older creates left, one spool at a time.
                drop(state);
                let queue = older.get_or_insert_with(|| {
                    let own = self.spool.lock().map(|s| s.path().to_owned()).ok();
                    spool::list(&self.state_dir)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|path| Some(path) != own.as_ref())
                        .collect()
                });
                if let Some(path) = queue.pop_front() {
                    match self.replay(&path) {
                        Replay::Done => {}
                        Replay::Interrupted => queue.push_front(path),
                        Replay::Stopped => return,
                    }
                    continue;
                }
                let mut state = self.shared.lock();
                state.older_pending = false;
                self.shared.changed.notify_all();
                if state.outbox.is_empty() {
                    // Wait for new events (the create runs on) or nothing (it ended).
                    let _ = self
                        .shared
                        .changed
                        .wait_timeout(state, Duration::from_secs(1));
                }
                continue;
            }
            let now = Instant::now();
            // When the create is closing, the last events go at once unless State Hub asked
            // us to back off.
            let wait_for = if state.closing && self.backoff.attempts() == 0 {
                None
            } else {
                self.next_at.checked_duration_since(now)
            };
            if let Some(wait) = wait_for {
                let _ = self.shared.changed.wait_timeout(state, wait);
                continue;
            }
            let count = state.outbox.len().min(MAX_BATCH);
            let batch: Vec<String> = state
                .outbox
                .iter()
                .take(count)
                .map(|o| o.entry.json.clone())
                .collect();
            let last_seq = state.outbox[count - 1].entry.seq;
            let last_id = super::event_id(&batch[count - 1]);
            state.in_flight = count;
            state.in_flight_since = Some(now);
            drop(state);

            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let attempt = self.courier.post(&refs, &last_id);
            if let Attempt::Delivered { .. } = attempt {
                let marked = self
                    .spool
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .append_delivered(last_seq);
                if let Err(err) = marked {
                    Health::record_error(&self.state_dir, &format!("{err:#}"));
                }
            }
            let shared = Arc::clone(&self.shared);
            let mut state = shared.lock();
            state.in_flight = 0;
            state.in_flight_since = None;
            let carry_on = self.settle(&mut state, attempt, count);
            shared.changed.notify_all();
            if !carry_on {
                return;
            }
        }
    }

    /// Books an attempt on the outbox; false when State Hub refused us.
    fn settle(&mut self, state: &mut State, attempt: Attempt, count: usize) -> bool {
        let now = Instant::now();
        match attempt {
            Attempt::Delivered { took } => {
                state.outbox.drain(..count);
                // A State Hub that answers quickly again is waited for again.
                state.slow = took > SLOW;
                self.backoff.reset();
                self.next_at = now + MIN_INTERVAL;
                if self.in_error {
                    self.in_error = false;
                    Health::record_delivery(&self.state_dir);
                }
                true
            }
            Attempt::Retry { error, after } => {
                state.slow = true;
                self.next_at = now + self.backoff.next(after);
                self.note_error(&error);
                if !self.warned_retrying {
                    self.warned_retrying = true;
                    self.settings.warn(&format!(
                        "{error}; retrying in the background, the build goes on and events are kept in the spool"
                    ));
                }
                true
            }
            Attempt::Refused { error } => {
                state.stopped = true;
                state.slow = true;
                self.note_error(&error);
                self.settings.warn(&format!(
                    "{error}; State Hub is off for the rest of this run, events wait in the spool (see `sandboxer hub status`)"
                ));
                false
            }
        }
    }

    fn note_error(&mut self, error: &str) {
        if !self.in_error {
            self.in_error = true;
            Health::record_error(&self.state_dir, error);
        }
    }

    /// Delivers one older spool while the create has nothing of its own to send.
    fn replay(&mut self, path: &Utf8Path) -> Replay {
        let Ok(Some(mut spool)) = spool::try_take(path) else {
            return Replay::Done; // in use by another process, or gone
        };
        let Ok(mut pending) = spool.pending() else {
            return Replay::Done; // unreadable: `hub status` shows why
        };
        while !pending.is_empty() {
            let state = self.shared.lock();
            if state.stopped {
                return Replay::Stopped;
            }
            if !state.outbox.is_empty() {
                return Replay::Interrupted; // our own events first; come back later
            }
            if let Some(wait) = self.next_at.checked_duration_since(Instant::now()) {
                let _ = self.shared.changed.wait_timeout(state, wait);
                continue;
            }
            drop(state);
            let attempt = deliver_batch(&self.courier, &mut spool, &mut pending);
            let shared = Arc::clone(&self.shared);
            let mut state = shared.lock();
            // Nothing of the outbox was in this batch: settle it with a count of 0.
            if !self.settle(&mut state, attempt, 0) {
                return Replay::Stopped;
            }
        }
        let _ = spool.remove();
        Replay::Done
    }
}

enum Replay {
    Done,
    /// The create has events of its own to send first.
    Interrupted,
    /// State Hub refused us.
    Stopped,
}
