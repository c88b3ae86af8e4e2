//! Progress of a provision: one stream of events per sandbox, stamped (id, sequence number,
//! time) by a [`Stream`] and fanned out to sinks — quick ones on the provision's thread
//! (terminal, `--progress=jsonl`), slow ones (disk, network) behind a background worker.

pub mod cloudevents;
pub mod terminal;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use camino::Utf8PathBuf;
use jiff::Timestamp;

pub use terminal::Terminal;

/// How loud a line of tool output is, as the tool itself said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A headline (Packer's `say`: `==> null.example: ...`).
    Say,
    Message,
    Error,
}

/// What kind of step of a build: a builder's own step, a provisioner or a post-processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Build,
    Provisioner,
    PostProcessor,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Build => "build",
            StepKind::Provisioner => "provisioner",
            StepKind::PostProcessor => "post-processor",
        }
    }
}

/// One step of a build, as the tool announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The build it belongs to (`null.example`).
    pub build: String,
    pub kind: StepKind,
    /// What the tool said the step does (`Running post-processor: shell-local`).
    pub name: String,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Succeeded => "succeeded",
            StepOutcome::Failed => "failed",
            StepOutcome::Cancelled => "cancelled",
        }
    }
}

/// How a sandbox's provision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Ready,
    Failed,
    Cancelled,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Ready => "ready",
            Finish::Failed => "failed",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// What happened, in the sandbox's published stream (State Hub, `--progress=jsonl`).
/// `docs/state-hub.md` documents each kind and its data fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The sandbox was recorded.
    Created {
        profile: String,
        extension: String,
        mode: String,
        placement_host: String,
        expires_at: Timestamp,
    },
    /// Waiting for a placement slot: `place` 1 is next in line.
    Queued {
        placement_host: String,
        place: usize,
    },
    ProvisioningStarted {
        placement_host: String,
        slot: Option<u32>,
    },
    StepStarted(Step),
    StepFinished {
        step: Step,
        outcome: StepOutcome,
        /// What the tool said went wrong, for a failed step.
        error: Option<String>,
        duration: Duration,
    },
    /// A free-text note: sandboxer's own phases, an extension's remarks.
    Note {
        message: String,
    },
    /// Nothing was heard from the tool for `silent`, while `step` runs.
    Heartbeat {
        step: String,
        silent: Duration,
    },
    Artifact {
        path: Utf8PathBuf,
        bytes: u64,
        sha256: String,
    },
    /// The last event of a provision.
    Finished {
        state: Finish,
        duration: Duration,
        reason: Option<String>,
    },
}

impl Kind {
    /// Events that may be replaced by a later one of the same kind before they are sent:
    /// only the latest place in line and the latest heartbeat matter.
    pub fn supersedes(&self, older: &Kind) -> bool {
        matches!(
            (self, older),
            (Kind::Queued { .. }, Kind::Queued { .. })
                | (Kind::Heartbeat { .. }, Kind::Heartbeat { .. })
        )
    }
}

/// An event as published: what happened, stamped by the sandbox's [`Stamper`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Unique and time-ordered (a UUID v7); also the event's idempotency key.
    pub id: uuid::Uuid,
    pub sandbox: Arc<str>,
    /// 1, 2, 3, ... within the sandbox; a gap means coalesced heartbeats or places in line.
    pub seq: u64,
    pub time: Timestamp,
    pub kind: Kind,
    /// Where the event comes from and whose work it belongs to.
    pub origin: Arc<cloudevents::Origin>,
}

/// Something worth telling while a provision runs; what sinks receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One of the sandbox's published events.
    Published(Published),
    /// A line of the tool's own output, already redacted; shown, never published.
    Output { level: Level, text: String },
    /// The tool started, leading its own process group.
    ToolStarted { pgid: u32 },
    /// The tool started on the build host the sandbox is placed on, leading its own process
    /// group there (whose leader started at `started`, in clock ticks since the host booted).
    RemoteToolStarted { pgid: u32, started: Option<u64> },
    /// The tool exited (its group has been killed).
    ToolExited,
}

/// Receives events, on the provision's thread: must be quick and must never fail the build.
/// Anything that touches the disk or the network goes behind a [`Background`] worker.
pub trait Sink {
    fn emit(&mut self, event: &Event);
}

/// A sink that takes events in batches, on a background thread: everything that queued up
/// while it handled the previous batch, so it can coalesce (write only the latest state).
pub trait BatchSink: Send + 'static {
    /// Whether the sink cares about `event`; others never enter its queue.
    fn wants(event: &Event) -> bool
    where
        Self: Sized;

    fn emit_batch(&mut self, events: &[Event]);

    /// Whether `event` may be dropped when the queue is full (the oldest droppable one goes).
    /// An event that may not be dropped always enters the queue.
    fn may_drop(event: &Event) -> bool
    where
        Self: Sized,
    {
        let _ = event;
        true
    }
}

/// Where a provision reports: publishes events (stamped on the way) and passes on tool output.
pub trait Progress {
    /// Stamps `kind` as the sandbox's next event and hands it to every sink.
    fn publish(&mut self, kind: Kind);
    /// Hands an event that is not published (tool output, process groups) to every sink.
    fn emit(&mut self, event: &Event);
}

impl dyn Progress + '_ {
    /// Publishes a free-text note.
    pub fn note(&mut self, message: impl Into<String>) {
        self.publish(Kind::Note {
            message: message.into(),
        });
    }
}

/// Gives a sandbox's events their ids, sequence numbers and times.
#[derive(Debug)]
pub struct Stamper {
    sandbox: Arc<str>,
    next_seq: u64,
    origin: Arc<cloudevents::Origin>,
}

impl Stamper {
    pub fn new(sandbox: &str, origin: cloudevents::Origin) -> Stamper {
        Stamper {
            sandbox: sandbox.into(),
            next_seq: 1,
            origin: Arc::new(origin),
        }
    }

    pub fn stamp(&mut self, kind: Kind) -> Published {
        let seq = self.next_seq;
        self.next_seq += 1;
        Published {
            id: uuid::Uuid::now_v7(),
            sandbox: Arc::clone(&self.sandbox),
            seq,
            time: Timestamp::now(),
            kind,
            origin: Arc::clone(&self.origin),
        }
    }
}

/// A sandbox's stream: stamps what is published and sends everything on to `sink`.
pub struct Stream<'a> {
    pub stamper: &'a mut Stamper,
    pub sink: &'a mut dyn Sink,
}

impl Progress for Stream<'_> {
    fn publish(&mut self, kind: Kind) {
        let published = self.stamper.stamp(kind);
        self.sink.emit(&Event::Published(published));
    }

    fn emit(&mut self, event: &Event) {
        self.sink.emit(event);
    }
}

/// Sends each event to every sink in turn.
#[derive(Default)]
pub struct FanOut<'a> {
    sinks: Vec<&'a mut dyn Sink>,
}

impl<'a> FanOut<'a> {
    pub fn with(mut self, sink: &'a mut dyn Sink) -> Self {
        self.sinks.push(sink);
        self
    }
}

impl Sink for FanOut<'_> {
    fn emit(&mut self, event: &Event) {
        for sink in &mut self.sinks {
            sink.emit(event);
        }
    }
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn emit(&mut self, _event: &Event) {}
}

/// How many events wait for a slow sink before the oldest ones are dropped; the provision
/// never waits for a slow sink.
const QUEUE_LIMIT: usize = 1024;

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    closed: bool,
    /// Events dropped because the queue was full.
    dropped: u64,
}

/// Runs a [`BatchSink`] on its own thread behind a bounded queue, so that emitting never blocks
/// the provision: when the sink falls behind by [`QUEUE_LIMIT`] events, the oldest droppable
/// ones are dropped.
pub struct Background<S: BatchSink> {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    worker: Option<JoinHandle<S>>,
}

impl<S: BatchSink> Background<S> {
    pub fn spawn(sink: S) -> std::io::Result<Background<S>> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let worker = {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("progress-sink".to_owned())
                .spawn(move || run_worker(&queue, sink))?
        };
        Ok(Background {
            queue,
            worker: Some(worker),
        })
    }

    /// Waits until every queued event has been handled and stops the worker; returns the sink
    /// (so its owner can read what it collected, such as an error) and how many events were
    /// dropped because it fell behind.
    pub fn finish(mut self) -> (S, u64) {
        self.close();
        let sink = self
            .worker
            .take()
            .expect("a background sink is finished once")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let dropped = lock(&self.queue.0).dropped;
        (sink, dropped)
    }

    fn close(&self) {
        lock(&self.queue.0).closed = true;
        self.queue.1.notify_all();
    }
}

impl<S: BatchSink> Drop for Background<S> {
    fn drop(&mut self) {
        self.close();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl<S: BatchSink> Sink for Background<S> {
    fn emit(&mut self, event: &Event) {
        if !S::wants(event) {
            return;
        }
        let mut queue = lock(&self.queue.0);
        if queue.events.len() >= QUEUE_LIMIT
            && let Some(oldest) = queue.events.iter().position(S::may_drop)
        {
            queue.events.remove(oldest);
            queue.dropped += 1;
        }
        queue.events.push_back(event.clone());
        drop(queue);
        self.queue.1.notify_one();
    }
}

fn run_worker<S: BatchSink>(queue: &(Mutex<Queue>, Condvar), mut sink: S) -> S {
    loop {
        let batch: Vec<Event> = {
            let mut guard = lock(&queue.0);
            while guard.events.is_empty() && !guard.closed {
                guard = queue.1.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            if guard.events.is_empty() {
                return sink; // closed and drained
            }
            guard.events.drain(..).collect()
        };
        sink.emit_batch(&batch);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Blocks on its first batch until told to go on, then records what it saw.
    struct Gated {
        entered: mpsc::Sender<()>,
        gate: Option<mpsc::Receiver<()>>,
        batches: Vec<Vec<Event>>,
    }

    /// A background sink stuck in its first batch (event 0), and the key that releases it.
    fn stuck() -> (Background<Gated>, mpsc::Sender<()>) {
        let (open, gate) = mpsc::channel();
        let (entered, inside) = mpsc::channel();
        let mut background = Background::spawn(Gated {
            entered,
            gate: Some(gate),
            batches: Vec::new(),
        })
        .unwrap();
        background.emit(&phase(0));
        inside.recv().unwrap();
        (background, open)
    }

    impl BatchSink for Gated {
        fn wants(event: &Event) -> bool {
            !matches!(event, Event::Output { .. })
        }
        fn emit_batch(&mut self, events: &[Event]) {
            if let Some(gate) = self.gate.take() {
                let _ = self.entered.send(());
                let _ = gate.recv();
            }
            self.batches.push(events.to_vec());
        }
    }

    fn phase(n: usize) -> Event {
        Event::ToolStarted { pgid: n as u32 }
    }

    #[test]
    fn a_stuck_sink_never_blocks_the_emitter_and_gets_the_newest_events() {
        let (mut background, open) = stuck();
        let total = QUEUE_LIMIT + 10;
        for n in 1..=total {
            background.emit(&phase(n));
            background.emit(&Event::Output {
                level: Level::Say,
                text: "not wanted".into(),
            });
        }
        open.send(()).unwrap();
        let (sink, dropped) = background.finish();
        assert_eq!(dropped, 10);
        let seen: Vec<Event> = sink.batches.concat();
        assert_eq!(seen.first(), Some(&phase(0)));
        assert_eq!(seen.get(1), Some(&phase(11)), "the oldest were dropped");
        assert_eq!(seen.last(), Some(&phase(total)));
        assert_eq!(seen.len(), QUEUE_LIMIT + 1);
    }

    #[test]
    fn batches_coalesce_what_queued_up() {
        let (mut background, open) = stuck();
        for n in 1..=5 {
            background.emit(&phase(n));
        }
        open.send(()).unwrap();
        let (sink, _) = background.finish();
        assert_eq!(sink.batches.len(), 2, "{:?}", sink.batches);
        assert_eq!(sink.batches[1].len(), 5);
    }
}
