//! Human-readable progress on stderr: a live status line below the tool's scrolling output on a
//! terminal, plain timestamped lines anywhere else (CI, make, a pipe), nothing with `--quiet`.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use jiff::Timestamp;

use super::{Event, Kind, Published, Sink};
use crate::duration::human_elapsed;

/// How progress is shown; the CLI decides from the flags and whether stderr is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live status line (current step, elapsed time) kept below the scrolling output.
    Live { color: bool },
    /// One line per message, each starting with a UTC timestamp; no escape codes.
    Plain,
    /// Nothing but warnings (the result and errors are printed by the CLI).
    Quiet,
}

/// Progress on stderr, in one of the [`Mode`]s.
pub struct Terminal {
    mode: Mode,
    status: Option<Status>,
}

/// The live status line and what it shows.
struct Status {
    bar: ProgressBar,
    sandbox: String,
    /// When the current step started, for the step's own clock.
    step_started: Arc<Mutex<Instant>>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Terminal {
    pub fn new(mode: Mode) -> Terminal {
        Terminal { mode, status: None }
    }

    /// A handle that prints warnings from any thread without tearing the status line.
    pub fn notifier(&mut self) -> Notifier {
        Notifier {
            mode: self.mode,
            bar: self.status().map(|status| status.bar.clone()),
        }
    }

    fn status(&mut self) -> Option<&mut Status> {
        let Mode::Live { color } = self.mode else {
            return None;
        };
        Some(self.status.get_or_insert_with(|| Status::new(color)))
    }

    fn line(&mut self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => plain_line(text),
            Mode::Live { .. } => {
                if let Some(status) = self.status() {
                    status.bar.suspend(|| {
                        let _ = writeln!(std::io::stderr().lock(), "{text}");
                    });
                }
            }
        }
    }

    fn published(&mut self, event: &Published) {
        // "on `hv1`" for a host; "in the pool (b1, b2)" while a pool's host is not chosen yet.
        fn on(placement_host: &str) -> String {
            if placement_host.contains(' ') {
                format!("in {placement_host}")
            } else {
                format!("on `{placement_host}`")
            }
        }
        let text = match &event.kind {
            Kind::Created {
                profile,
                mode,
                placement_host,
                ..
            } => {
                if let Some(status) = self.status() {
                    status.sandbox = event.sandbox.to_string();
                    status.set(format!(
                        "created ({profile}, {mode} mode, {})",
                        on(placement_host)
                    ));
                }
                Some(format!(
                    "sandbox {} ({profile}, {mode} mode)",
                    event.sandbox
                ))
            }
            Kind::Queued {
                placement_host,
                place,
            } => {
                let on = on(placement_host);
                let text = if *place == 1 {
                    format!("waiting for a free placement slot {on} (next in line)")
                } else {
                    format!("waiting for a placement slot {on}: place {place} in the queue")
                };
                if let Some(status) = self.status() {
                    status.set(text.clone());
                }
                Some(text)
            }
            Kind::ProvisioningStarted { placement_host, .. } => {
                let text = format!("provisioning on `{placement_host}`");
                if let Some(status) = self.status() {
                    status.set(text.clone());
                }
                Some(text)
            }
            Kind::Note { message } => Some(message.clone()),
            Kind::Heartbeat { step, silent } => Some(format!(
                "still running {step} (nothing heard for {})",
                human_elapsed(jiff::SignedDuration::try_from(*silent).unwrap_or_default())
            )),
            Kind::StepStarted(step) => {
                // The tool's own headline says it already; the status line follows it.
                if let Some(status) = self.status() {
                    status.set(format!("{}: {}", step.build, step.name));
                }
                None
            }
            Kind::StepFinished { step, outcome, .. } => {
                if let Some(status) = self.status() {
                    status.set(format!(
                        "{}: {} ({})",
                        step.build,
                        step.name,
                        outcome.as_str()
                    ));
                }
                None
            }
            Kind::Artifact { .. } => None,
            Kind::Finished { .. } => {
                if let Some(status) = self.status.take() {
                    status.bar.finish_and_clear();
                }
                None
            }
        };
        if let Some(text) = text {
            self.line(&format!("sandboxer: {text}"));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(status) = self.status.take() {
            status.bar.finish_and_clear();
        }
    }
}

impl Sink for Terminal {
    fn emit(&mut self, event: &Event) {
        if self.mode == Mode::Quiet {
            return;
        }
        match event {
            Event::Published(published) => self.published(published),
            Event::Output { text, .. } => self.line(text),
            Event::ToolStarted { .. } | Event::RemoteToolStarted { .. } | Event::ToolExited => {}
        }
    }
}

impl Status {
    fn new(color: bool) -> Status {
        let step_started = Arc::new(Mutex::new(Instant::now()));
        let template = if color {
            "{spinner:.cyan} {prefix:.bold} {wide_msg} {step_elapsed:.dim} {elapsed_precise:.dim}"
        } else {
            "{spinner} {prefix} {wide_msg} {step_elapsed} {elapsed_precise}"
        };
        let clock = Arc::clone(&step_started);
        let style = ProgressStyle::with_template(template)
            .expect("the status line template is valid")
            .with_key(
                "step_elapsed",
                move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let started = *clock.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = write!(out, "step {}s ·", started.elapsed().as_secs());
                },
            );
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        Status {
            bar,
            sandbox: String::new(),
            step_started,
        }
    }

    fn set(&mut self, message: String) {
        *self
            .step_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        self.bar.set_prefix(self.sandbox.clone());
        self.bar.set_message(message);
    }
}

/// Prints warnings from any thread (the State Hub worker's), above the status line if there is
/// one; warnings are shown even with `--quiet`.
#[derive(Clone)]
pub struct Notifier {
    mode: Mode,
    bar: Option<ProgressBar>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Notifier {
    pub fn warn(&self, text: &str) {
        let text = format!("sandboxer: warning: {text}");
        match (&self.mode, &self.bar) {
            (Mode::Plain, _) => plain_line(&text),
            (Mode::Live { .. }, Some(bar)) if !bar.is_finished() => bar.suspend(|| {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }),
            _ => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }
}

/// One line on stderr, after the time in UTC to the second.
fn plain_line(text: &str) {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split('\n') {
        out.push_str(&now);
        if !line.is_empty() {
            out.push(' ');
            out.push_str(line);
        }
        out.push('\n');
    }
    // Progress is best effort: a closed stderr must not fail the build.
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}
