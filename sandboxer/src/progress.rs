//! Progress events and the sinks they fan out to (the terminal, the sandbox record).

use std::io::Write as _;

use camino::Utf8PathBuf;
use serde::Serialize;

/// How loud a line of tool output is, as the tool itself said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// A headline (Packer's `say`: `==> null.example: ...`).
    Say,
    Message,
    Error,
}

/// Something worth telling while a provision runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A step of sandboxer's own ("running packer build").
    Phase { message: String },
    /// A line of the tool's own output, already redacted.
    Output { level: Level, text: String },
    /// The tool started in its own process group.
    ProcessStarted { pid: u32, pgid: u32 },
    /// The tool exited.
    ProcessExited { code: Option<i32> },
    /// The tool reported a file it produced.
    Artifact { path: Utf8PathBuf },
}

/// Receives events. Sinks must be quick: they run on the provision's path.
pub trait Sink {
    fn emit(&mut self, event: &Event);
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
            Event::ProcessStarted { .. } | Event::ProcessExited { .. } | Event::Artifact { .. } => {
                Ok(())
            }
        };
    }
}

/// Sends each event to every sink in turn.
#[derive(Default)]
pub struct FanOut<'a> {
    sinks: Vec<&'a mut dyn Sink>,
}

impl<'a> FanOut<'a> {
    pub fn new() -> Self {
        FanOut { sinks: Vec::new() }
    }

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
