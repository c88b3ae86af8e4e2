//! Progress of a provision: the events an extension reports, and the sinks they fan out to —
//! quick ones on the provision's thread, slow ones (disk, network) behind a background worker.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How loud a line of tool output is, as the tool itself said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A headline (Packer's `say`: `==> null.example: ...`).
    Say,
    Message,
    Error,
}

/// Something worth telling while a provision runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step of sandboxer's own ("running packer build"), or a note from the extension.
    Phase { message: String },
    /// A line of the tool's own output, already redacted.
    Output { level: Level, text: String },
    /// The tool started, leading its own process group.
    ToolStarted { pgid: u32 },
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
}

/// Human-readable progress on stderr.
#[derive(Debug, Default)]
pub struct Terminal {
    pub quiet: bool,
}

impl Sink for Terminal {
    fn emit(&mut self, event: &Event) {
        if self.quiet {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the build.
        let _ = match event {
            Event::Phase { message } => writeln!(stderr, "sandboxer: {message}"),
            Event::Output { text, .. } => writeln!(stderr, "{text}"),
            Event::ToolStarted { .. } | Event::ToolExited => Ok(()),
        };
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
/// the provision: when the sink falls behind by [`QUEUE_LIMIT`] events, the oldest are dropped.
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
        if queue.events.len() >= QUEUE_LIMIT {
            queue.events.pop_front();
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
        Event::Phase {
            message: n.to_string(),
        }
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
