//! Running the `packer` executable: finding it, detecting what it supports, and streaming a run.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::sync::Arc;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::machine_readable::{Notice, Report};
use crate::cancel::{Cancel, Stopper as _};
use crate::process;
use crate::progress::{Event, Kind, Progress, StepOutcome};
use crate::redact::Redactor;
use crate::remote::{HostSession, RemoteGroup};

/// Finds the Packer executable: `explicit` (`$SANDBOXER_PACKER`) or `packer` on `PATH`.
pub fn find_packer(explicit: Option<&Utf8Path>) -> anyhow::Result<Utf8PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(
            is_executable(path.as_std_path()),
            "SANDBOXER_PACKER={path} is not an executable file"
        );
        return Ok(path.to_owned());
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join("packer"))
        .find(|candidate| is_executable(candidate))
        .and_then(|found| Utf8PathBuf::from_path_buf(found).ok())
        .context("`packer` not found on PATH; install it (Debian: `apt-get install packer`) or set SANDBOXER_PACKER")
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// What an installed Packer can do, detected once per executable and cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// e.g. "1.6.6".
    pub version: String,
    /// `packer init` exists from 1.7 on.
    pub has_init: bool,
}

/// Detects the capabilities of `packer`, caching them by the executable's path, size and mtime
/// so the cost of an extra Packer start (~0.1 s) is paid once per installed version.
pub fn capabilities(packer: &Utf8Path, cache_dir: &Utf8Path) -> anyhow::Result<Capabilities> {
    capabilities_within(packer, cache_dir, VERSION_TIMEOUT)
}

/// [`capabilities`], giving `packer version` at most `timeout` to answer.
fn capabilities_within(
    packer: &Utf8Path,
    cache_dir: &Utf8Path,
    timeout: Duration,
) -> anyhow::Result<Capabilities> {
    let real = packer
        .canonicalize_utf8()
        .unwrap_or_else(|_| packer.to_owned());
    let meta = std::fs::metadata(&real).with_context(|| format!("reading {real}"))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let key = format!(
        "{real}|{}|{}",
        meta.len(),
        mtime.map_or(0, |d| d.as_nanos())
    );
    let cache_file = cache_dir.join("packer-capabilities.json");

    #[derive(Serialize, Deserialize)]
    struct Cached {
        key: String,
        capabilities: Capabilities,
    }
    if let Ok(text) = std::fs::read(&cache_file)
        && let Ok(cached) = serde_json::from_slice::<Cached>(&text)
        && cached.key == key
    {
        return Ok(cached.capabilities);
    }

    let handle = duct::cmd(packer.as_std_path(), ["version"])
        .env("CHECKPOINT_DISABLE", "1")
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        // Its own process group, so a Packer that hangs is stopped with whatever it started.
        .before_spawn(|command| {
            command.process_group(0);
            Ok(())
        })
        .start()
        .with_context(|| format!("running `{packer} version`"))?;
    // Every build asks (for its provenance): a Packer that hangs must not hang the build.
    let deadline = Instant::now() + timeout;
    let output = loop {
        if let Some(output) = handle
            .try_wait()
            .with_context(|| format!("running `{packer} version`"))?
        {
            break output;
        }
        if Instant::now() >= deadline {
            for pid in handle.pids() {
                let _ = process::signal_group(pid, rustix::process::Signal::KILL);
            }
            let _ = handle.kill();
            anyhow::bail!(
                "`{packer} version` did not answer within {} ms",
                timeout.as_millis()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text)
        .with_context(|| format!("`{packer} version` printed no version: {text:?}"))?;
    let capabilities = Capabilities {
        has_init: version_at_least(&version, (1, 7)),
        version,
    };
    let cached = serde_json::to_vec(&Cached {
        key,
        capabilities: capabilities.clone(),
    })?;
    // A cache that cannot be written only costs a Packer start next time.
    let _ = crate::files::write_atomically(&cache_file, &cached);
    Ok(capabilities)
}

/// How long `packer version` may take (it answers in ~0.1 s).
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// "Packer v1.6.6" → "1.6.6".
pub fn parse_version(text: &str) -> Option<String> {
    let start = text.find(" v")? + 2;
    let version: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// One Packer invocation.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// On a build host: the host's Packer (a command name or a path there).
    pub packer: &'a Utf8Path,
    pub args: Vec<String>,
    /// On a build host: the build's copy of the template directory there.
    pub workdir: &'a Utf8Path,
    /// The run's own `TMPDIR`: Packer leaves temp scripts and plugin sockets behind.
    pub tmpdir: &'a Utf8Path,
    /// How long a cancelled Packer may take to clean up before its group is killed.
    pub cancel_timeout: Duration,
    /// Publish a heartbeat when Packer has said nothing for this long; `None`: never.
    pub heartbeat: Option<Duration>,
}

impl Invocation<'_> {
    /// `packer build`, as a heartbeat names the run when no step is known.
    fn name(&self) -> String {
        format!(
            "packer {}",
            self.args.first().map(String::as_str).unwrap_or_default()
        )
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// `None` when Packer was killed by a signal.
    pub exit_code: Option<i32>,
    pub report: Report,
}

/// Longest line kept whole; the rest of a longer line is dropped, so memory stays bounded.
const MAX_LINE: usize = 64 * 1024;

/// Where Packer runs: here, or on a build host through the session that holds its slot there.
/// Either way its output goes through the same streaming, parsing and redaction.
pub enum Host<'a> {
    Local,
    Remote(&'a mut HostSession),
}

/// Runs Packer in its own process group, here or on a build host, streams its output line by
/// line into `log` (redacted), the report and the progress sink, and returns when it exits.
pub fn run(
    invocation: &Invocation<'_>,
    host: Host<'_>,
    log: &mut dyn Write,
    redactor: &Redactor,
    progress: &mut dyn Progress,
    cancel: &Cancel,
) -> anyhow::Result<Outcome> {
    let shown_args = redactor.redact(&invocation.args.join(" ")).into_owned();
    let on = match &host {
        Host::Local => String::new(),
        Host::Remote(session) => format!(" on build host `{}`", session.host().name),
    };
    writeln!(
        log,
        "# sandboxer: running {} {shown_args} (in {}{on})",
        invocation.packer, invocation.workdir
    )?;
    let mut report = Report::default();
    let exit_code = match host {
        Host::Local => run_here(invocation, log, redactor, progress, cancel, &mut report)?,
        Host::Remote(session) => run_there(
            invocation,
            session,
            log,
            redactor,
            progress,
            cancel,
            &mut report,
        )?,
    };
    // Every step that started gets an end, however Packer went.
    let outcome = if report.cancelled || cancel.requested().is_some() {
        StepOutcome::Cancelled
    } else if exit_code == Some(0) {
        StepOutcome::Succeeded
    } else {
        StepOutcome::Failed
    };
    report.finish_steps(outcome, &mut |notice| publish(progress, notice));
    progress.emit(&Event::ToolExited);
    Ok(Outcome { exit_code, report })
}

/// Packer here, in its own process group; returns its exit code (`None`: killed by a signal).
fn run_here(
    invocation: &Invocation<'_>,
    log: &mut dyn Write,
    redactor: &Redactor,
    progress: &mut dyn Progress,
    cancel: &Cancel,
    report: &mut Report,
) -> anyhow::Result<Option<i32>> {
    let reader = duct::cmd(invocation.packer.as_std_path(), &invocation.args)
        .dir(invocation.workdir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TMPDIR", invocation.tmpdir)
        .stdin_null()
        .stderr_to_stdout()
        .unchecked()
        // Its own process group, so a cancel can reach Packer, its plugins and their children
        // together: signalling the spawned pid alone is ignored (SIGINT) or orphans the build (SIGKILL).
        .before_spawn(|command| {
            command.process_group(0);
            Ok(())
        })
        .reader()
        .with_context(|| format!("starting {}", invocation.packer))?;
    let pid = reader
        .pids()
        .first()
        .copied()
        .context("packer started without a pid")?;
    let leader_started = process::start_time(pid);
    cancel.watch_group(pid);
    progress.emit(&Event::ToolStarted { pgid: pid });

    let streamed = stream_while(
        |finished| {
            watch_group(
                pid,
                leader_started,
                finished,
                cancel,
                invocation.cancel_timeout,
            )
        },
        &mut &reader,
        // Nobody reads Packer's output any more: stop it rather than let it block.
        || {
            let _ = process::signal_group(pid, rustix::process::Signal::KILL);
        },
        invocation,
        log,
        redactor,
        progress,
        report,
        cancel,
    );
    cancel.unwatch_group();
    // Packer has exited (its output ended). Whatever it left in its group (a plugin, a
    // provisioner's background child) must not outlive the build.
    let _ = process::signal_group(pid, rustix::process::Signal::KILL);
    let status = reader.try_wait();
    streamed.context("reading packer's output")?;
    log.flush()?;
    Ok(status?
        .context("packer's output ended but the process had not")?
        .status
        .code())
}

/// Packer on a build host: started by the agent that holds the build's slot there, its output
/// streamed back over that connection. A cancel reaches its group over a connection of its
/// own; the agent kills the group when Packer exits.
fn run_there(
    invocation: &Invocation<'_>,
    session: &mut HostSession,
    log: &mut dyn Write,
    redactor: &Redactor,
    progress: &mut dyn Progress,
    cancel: &Cancel,
    report: &mut Report,
) -> anyhow::Result<Option<i32>> {
    let mut run = session.start(&invocation.args, cancel)?;
    let group = run.group().clone();
    cancel.watch(Arc::new(group.clone()));
    progress.emit(&Event::RemoteToolStarted {
        pgid: group.pgid,
        started: group.started,
    });
    let streamed = stream_while(
        |finished| watch_remote_group(&group, finished, cancel, invocation.cancel_timeout),
        &mut run,
        || group.signal(rustix::process::Signal::KILL),
        invocation,
        log,
        redactor,
        progress,
        report,
        cancel,
    );
    cancel.unwatch_group();
    streamed.context("reading packer's output")?;
    log.flush()?;
    run.finish().map(Some)
}

/// Streams Packer's output from `reader` (read on a thread of its own, a few batches ahead)
/// while `watch` runs beside it, woken through [`Finished`] as soon as the stream has ended;
/// `stop` ends Packer when its output can no longer be written down.
#[allow(clippy::too_many_arguments)]
fn stream_while(
    watch: impl FnOnce(&Finished) + Send,
    reader: &mut (dyn Read + Send),
    stop: impl FnOnce(),
    invocation: &Invocation<'_>,
    log: &mut dyn Write,
    redactor: &Redactor,
    progress: &mut dyn Progress,
    report: &mut Report,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let finished = Finished::default();
    std::thread::scope(|scope| {
        scope.spawn(|| watch(&finished));
        let (lines, received) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let reading = scope.spawn(|| read_lines(reader, lines));
        let logged = stream(
            invocation, received, log, redactor, progress, report, cancel,
        );
        if logged.is_err() {
            stop();
        }
        let read = reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        finished.set();
        read.and(logged.context("writing the log"))
    })
}

/// How many batches of lines the reader may be ahead of the stream; with [`BATCH_BYTES`], this
/// bounds memory when sinks are slow.
const BATCHES_IN_FLIGHT: usize = 4;

/// A batch is sent once the reader has nothing more buffered (it would wait for Packer next),
/// or once it holds this much: one hand-over between the threads per batch, not per line.
const BATCH_BYTES: usize = 128 * 1024;

/// Reads Packer's output line by line (each at most [`MAX_LINE`] bytes) into `lines`, in batches.
fn read_lines(
    reader: &mut (dyn Read + Send),
    lines: mpsc::SyncSender<Batch>,
) -> anyhow::Result<()> {
    // As large as a pipe's buffer, so one read takes all Packer has written.
    let mut input = BufReader::with_capacity(64 * 1024, reader);
    loop {
        let mut batch = Batch::default();
        let ended = loop {
            let start = batch.bytes.len();
            let read = read_bounded_line(&mut input, &mut batch.bytes, start + MAX_LINE)?;
            if read == 0 {
                break true;
            }
            let cut = read > batch.bytes.len() - start;
            batch.lines.push((start..batch.bytes.len(), cut));
            if input.buffer().is_empty() || batch.bytes.len() >= BATCH_BYTES {
                break false;
            }
        };
        if !batch.lines.is_empty() && lines.send(batch).is_err() {
            return Ok(()); // the stream ended first
        }
        if ended {
            return Ok(());
        }
    }
}

/// Lines of Packer's output as read, each at most [`MAX_LINE`] bytes, in one buffer: one
/// allocation per batch, not one per line.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Each line's bytes, and whether the rest of it was dropped.
    lines: Vec<(std::ops::Range<usize>, bool)>,
}

/// Hands what a line means to the progress stream.
fn publish(progress: &mut dyn Progress, notice: Notice) {
    match notice {
        Notice::Output(level, text) => progress.emit(&Event::Output { level, text }),
        Notice::StepStarted(step) => progress.publish(Kind::StepStarted(step)),
        Notice::StepFinished {
            step,
            outcome,
            error,
            duration,
        } => progress.publish(Kind::StepFinished {
            step,
            outcome,
            error,
            duration,
        }),
        // Artifacts are published once hashed, after the build.
        Notice::Artifact(_) => {}
    }
}

/// Logs, reports and shows each line as it arrives; publishes a heartbeat whenever Packer has
/// been silent for the invocation's heartbeat interval.
fn stream(
    invocation: &Invocation<'_>,
    lines: mpsc::Receiver<Batch>,
    log: &mut dyn Write,
    redactor: &Redactor,
    progress: &mut dyn Progress,
    report: &mut Report,
    cancel: &Cancel,
) -> std::io::Result<()> {
    let mut last_heard = Instant::now();
    loop {
        let waiting = match lines.try_recv() {
            Ok(line) => Some(line),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        };
        let batch = match waiting {
            Some(batch) => batch,
            // Everything read so far is handled and Packer has said nothing more yet: let the
            // log catch up, so that `tail -f` shows the build as it runs.
            None => match log.flush() {
                Err(err) => return Err(err),
                Ok(()) => match invocation.heartbeat {
                    None => match lines.recv() {
                        Ok(buffer) => buffer,
                        Err(mpsc::RecvError) => return Ok(()),
                    },
                    Some(interval) => {
                        let wait = interval.saturating_sub(last_heard.elapsed());
                        match lines.recv_timeout(wait) {
                            Ok(buffer) => buffer,
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                let step = report
                                    .current_step()
                                    .map(|step| format!("{}: {}", step.build, step.name))
                                    .unwrap_or_else(|| invocation.name());
                                progress.publish(Kind::Heartbeat {
                                    step,
                                    silent: last_heard.elapsed(),
                                });
                                // The next one after another full interval of silence.
                                last_heard = Instant::now();
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                        }
                    }
                },
            },
        };
        last_heard = Instant::now();
        for (range, cut) in &batch.lines {
            let bytes = &batch.bytes[range.clone()];
            // Validation alone is much faster than the lossy conversion, and almost every line
            // passes.
            let raw = match std::str::from_utf8(bytes) {
                Ok(text) => std::borrow::Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(bytes),
            };
            let line = super::machine_readable::redact_line(redactor, &raw, *cut);
            log.write_all(line.as_bytes())?;
            if !line.ends_with('\n') {
                log.write_all(b"\n")?;
            }
            if cancel.requested().is_some() {
                report.interrupted();
            }
            report.observe(&line, |notice| publish(progress, notice));
        }
    }
}

/// Set when Packer's output has ended; wakes the watcher at once instead of at its next tick.
#[derive(Default)]
struct Finished {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Finished {
    fn set(&self) {
        *self
            .done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for [`Finished::set`]; whether it has been set.
    fn wait(&self, timeout: Duration) -> bool {
        let done = self
            .done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (done, _) = self
            .changed
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *done
    }
}

/// How long processes left in the group may keep Packer's output open after Packer exited.
const STRAGGLER_GRACE: Duration = Duration::from_secs(2);

/// Runs beside the reader until it finishes: kills the group when a cancelled Packer takes longer
/// than `cancel_timeout`, or when Packer exited but leftovers keep its output open (the reader
/// would otherwise wait for them forever).
fn watch_group(
    pgid: u32,
    leader_started: Option<u64>,
    finished: &Finished,
    cancel: &Cancel,
    cancel_timeout: Duration,
) {
    let mut leader_gone_at: Option<Instant> = None;
    loop {
        let cancel_overdue = cancel
            .requested_at()
            .is_some_and(|at| at.elapsed() >= cancel_timeout);
        if leader_gone_at.is_none()
            && !leader_started.is_some_and(|started| process::is_alive(pgid, started))
        {
            leader_gone_at = Some(Instant::now());
        }
        let stragglers_overdue = leader_gone_at.is_some_and(|at| at.elapsed() >= STRAGGLER_GRACE);
        if cancel_overdue || stragglers_overdue {
            let _ = process::signal_group(pgid, rustix::process::Signal::KILL);
        }
        // Woken at once when the stream ends: the build's caller waits for this thread.
        if finished.wait(Duration::from_millis(20)) {
            return;
        }
    }
}

/// The same for a group on a build host, once: a cancel that outlasts `cancel_timeout` kills
/// the group there (the agent itself kills what Packer leaves behind).
fn watch_remote_group(
    group: &RemoteGroup,
    finished: &Finished,
    cancel: &Cancel,
    cancel_timeout: Duration,
) {
    let mut killed = false;
    loop {
        let cancel_overdue = cancel
            .requested_at()
            .is_some_and(|at| at.elapsed() >= cancel_timeout);
        if cancel_overdue && !killed {
            group.signal(rustix::process::Signal::KILL);
            killed = true;
        }
        // Woken at once when the stream ends, as for a group here.
        if finished.wait(Duration::from_millis(20)) {
            return;
        }
    }
}

/// Reads up to and including a newline, keeping at most `max` bytes of it; 0 at end of input.
fn read_bounded_line(
    reader: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        total += used;
        reader.consume(used);
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("Packer v1.6.6\n").as_deref(), Some("1.6.6"));
        assert_eq!(
            parse_version("Packer v1.11.2\n\nYour version is out of date").as_deref(),
            Some("1.11.2")
        );
        assert_eq!(parse_version("nonsense"), None);
        assert!(!version_at_least("1.6.6", (1, 7)));
        assert!(version_at_least("1.7.0", (1, 7)));
        assert!(version_at_least("1.11.2", (1, 7)));
        assert!(version_at_least("2.0", (1, 7)));
    }

    #[test]
    fn capabilities_of_the_real_packer_are_detected_once_and_cached() {
        let packer =
            find_packer(None).expect("the tests need `packer` on PATH (run `cargo xtask setup`)");
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = Utf8Path::from_path(dir.path()).unwrap();
        let detected = capabilities(&packer, cache_dir).unwrap();
        let cache_file = cache_dir.join("packer-capabilities.json");
        let cached = std::fs::read_to_string(&cache_file).unwrap();
        assert!(cached.contains(&detected.version), "{cached}");
        assert_eq!(
            detected.has_init,
            version_at_least(&detected.version, (1, 7))
        );

        // A planted answer under the same key proves the second call does not run packer.
        std::fs::write(&cache_file, cached.replace(&detected.version, "9.9.9")).unwrap();
        let again = capabilities(&packer, cache_dir).unwrap();
        assert_eq!(
            again,
            Capabilities {
                version: "9.9.9".into(),
                has_init: detected.has_init
            }
        );
    }

    /// A Packer whose `packer version` hangs costs a build its provenance's version, not the
    /// build, and what it started is stopped.
    #[test]
    fn a_packer_that_never_says_its_version_is_given_up_on_and_stopped() {
        let fake = Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/fakes/fake-packer-hangs-on-version");
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = Utf8Path::from_path(dir.path()).unwrap();
        let started = Instant::now();
        let err = capabilities_within(&fake, cache_dir, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not answer within 300 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!cache_dir.join("packer-capabilities.json").exists());
        let leftover = || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|cmdline| cmdline == b"sleep\x00299\x00")
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while leftover() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!leftover(), "the fake's child outlived the timeout");
    }

    #[test]
    fn long_lines_are_cut_not_buffered_whole() {
        let input = format!("{}\nnext\n", "x".repeat(100));
        let mut reader = std::io::BufReader::with_capacity(8, input.as_bytes());
        let mut buffer = Vec::new();
        assert_eq!(
            read_bounded_line(&mut reader, &mut buffer, 10).unwrap(),
            101
        );
        assert_eq!(buffer, b"xxxxxxxxxx");
        buffer.clear();
        read_bounded_line(&mut reader, &mut buffer, 10).unwrap();
        assert_eq!(buffer, b"next\n");
        buffer.clear();
        assert_eq!(read_bounded_line(&mut reader, &mut buffer, 10).unwrap(), 0);
    }
}
