//! Build hosts reached over SSH: the slot a build holds on its host ([`HostSession`]), copying
//! files there and back with rsync, running Packer there with its output streamed back,
//! hashing files there, signalling and stopping what runs there ([`RemoteGroup`], [`stop`]),
//! and a host's state for `sandboxer hosts` ([`status`]).
//!
//! Nothing is installed on a build host: each connection runs `agent.sh` (sent as one quoted
//! word) with its values as arguments, so no value is ever read as shell text there.
//!
//! A build's slot on its host is an flock held by the agent's `hold` process, which lives for
//! the whole build, and by every process of the build it starts (they inherit the lock): two
//! control machines sharing a pool never overbook a host, and a build that outlives its
//! sandboxer keeps its slot until it is stopped.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use rustix::process::Signal;

use crate::cancel::{Cancel, Stopper, cancelled_error};
use crate::error::{Error, ErrorKind};
use crate::pool::SshHost;
use crate::process;
use crate::progress::{Event, Kind, Progress};
use crate::ssh::{Session, SshClient, SshTarget};

/// The script every connection runs; see its header for the commands and requests.
const AGENT: &str = include_str!("agent.sh");

/// How the agent prefixes what it says on stderr.
const AGENT_PREFIX: &str = "sandboxer-agent: ";

/// How many of the other lines on the connection's stderr (ssh's own) are kept for messages.
const SAID_LINES: usize = 20;

/// How long a host gets to answer a short request (create a directory, scrub, end).
const SHORT_REQUEST: Duration = Duration::from_secs(60);

/// How long an orphaned Packer on a build host gets to cancel cleanly before it is killed.
pub const ORPHAN_CANCEL_GRACE: Duration = Duration::from_secs(10);

/// A build host of the pool, as a create reaches it.
#[derive(Debug, Clone)]
pub struct BuildHost {
    pub name: String,
    pub ssh: SshHost,
    /// Its slots (`max_concurrent`); 0 for no limit.
    pub slots: u32,
}

/// The argv that runs the agent's `command` on a host.
fn agent(command: &str, args: &[String]) -> Vec<String> {
    ["sh", "-c", AGENT, "sandboxer-agent", command]
        .into_iter()
        .map(str::to_owned)
        .chain(args.iter().cloned())
        .collect()
}

fn batch(ssh: &SshHost) -> Session {
    Session::Batch {
        connect_timeout: ssh.connect_timeout,
    }
}

/// What the agent said on stderr, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// Every slot on the host is held: by other control machines' builds (this machine's own
    /// take a slot here first, so they never get that far).
    Full,
    Slot {
        slot: Option<u32>,
        pid: u32,
        started: Option<u64>,
        boot_id: String,
    },
    Dir(Utf8PathBuf),
    /// The first line `packer version` printed there (empty when it printed nothing).
    Version(String),
    Packer {
        pgid: u32,
        started: Option<u64>,
    },
    Hashed(RemoteFile),
    HashedAll,
    Scrubbed,
    Ended,
    Error(String),
    /// Anything else the agent said (`stop`, `status` and `signal` replies).
    Other(String),
}

impl Reply {
    fn parse(line: &str) -> Reply {
        let mut words = line.split(' ');
        let word = words.next().unwrap_or_default();
        let fields: Vec<&str> = words.collect();
        let number = |at: usize| fields.get(at).and_then(|field| field.parse::<u32>().ok());
        let big = |at: usize| fields.get(at).and_then(|field| field.parse::<u64>().ok());
        match (word, fields.as_slice()) {
            ("full", _) => Reply::Full,
            ("slot", [_, _, _, boot_id]) => match number(1) {
                Some(pid) => Reply::Slot {
                    slot: number(0),
                    pid,
                    started: big(2),
                    boot_id: (*boot_id).to_owned(),
                },
                None => Reply::Other(line.to_owned()),
            },
            ("dir", [hex]) => match unhex(hex) {
                Some(dir) => Reply::Dir(dir.into()),
                None => Reply::Other(line.to_owned()),
            },
            ("version", [hex]) => match unhex(hex) {
                Some(version) => Reply::Version(version),
                None => Reply::Other(line.to_owned()),
            },
            ("version", []) => Reply::Version(String::new()),
            ("packer", [_, _]) => match number(0) {
                Some(pgid) => Reply::Packer {
                    pgid,
                    started: big(1),
                },
                None => Reply::Other(line.to_owned()),
            },
            ("hashed", [sha256, _, real, given]) => match (big(1), unhex(real), unhex(given)) {
                (Some(bytes), Some(path), Some(given)) => Reply::Hashed(RemoteFile {
                    path: path.into(),
                    given: given.into(),
                    sha256: (*sha256).to_owned(),
                    bytes,
                }),
                _ => Reply::Other(line.to_owned()),
            },
            ("hashed-all", _) => Reply::HashedAll,
            ("scrubbed", _) => Reply::Scrubbed,
            ("ended", _) => Reply::Ended,
            ("error", _) => Reply::Error(fields.join(" ")),
            _ => Reply::Other(line.to_owned()),
        }
    }
}

/// A file on a build host, hashed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its real path on the host.
    pub path: Utf8PathBuf,
    /// The path it was asked for by (or found at, for an OVA in the output directory).
    pub given: Utf8PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// An argument for a request: every byte outside a plain set as `\0NNN`, which the agent's
/// `printf %b` turns back into the byte. No newline survives, so one argument is one line.
fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"._/=:,+@-".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("\\0{byte:03o}"));
        }
    }
    encoded
}

/// A path the agent sent back as hex (any byte survives that).
fn unhex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// `host:path` as rsync reads a remote path (`[v6]:path` for an IPv6 address); the user comes
/// from ssh's options.
fn rsync_remote(target: &SshTarget, path: &Utf8Path) -> String {
    if target.host.contains(':') {
        format!("[{}]:{path}", target.host)
    } else {
        format!("{}:{path}", target.host)
    }
}

/// The processes of a build on a host, as the record keeps them for whoever must stop them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub started: Option<u64>,
    /// The host's boot id: a pid from before a reboot means nothing after it.
    pub boot_id: String,
}

/// The outcome of asking a host for a slot.
#[derive(Debug)]
pub enum Opened {
    Held(Box<HostSession>),
    /// Every slot on the host is held, by builds of other control machines.
    Full,
}

/// A build slot held on a build host, and the connection that holds it: the agent's `hold`,
/// which then runs what the build needs there, one request at a time. Dropping it without
/// [`HostSession::close`] ends the agent (keeping the build's directory) and releases the slot.
pub struct HostSession {
    host: BuildHost,
    client: SshClient,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    replies: mpsc::Receiver<Reply>,
    said: Arc<Mutex<VecDeque<String>>>,
    /// Ends each run's output on stdout: random, so Packer's output never ends a run early.
    mark: String,
    pub slot: Option<u32>,
    pub holder: Holder,
    /// `<workdir>/<sandbox-id>` once [`HostSession::sandbox`] made it.
    dir: Option<Utf8PathBuf>,
    /// Packer's group there while a run has not been seen to end.
    running: Option<(u32, Option<u64>)>,
    /// The first line `packer version` printed on the host.
    packer_version: Option<String>,
    closed: bool,
    /// Where the session's ssh listens for the rsyncs that share its connection.
    control_path: Utf8PathBuf,
    /// The control socket's private directory, removed with the session.
    _control: tempfile::TempDir,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("host", &self.host.name)
            .field("slot", &self.slot)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl HostSession {
    /// Connects to `host` and takes one of its slots, within the host's connect timeout; says
    /// [`Opened::Full`] when none is free. A cancel ends the attempt at once.
    pub fn open(client: &SshClient, host: &BuildHost, cancel: &Cancel) -> anyhow::Result<Opened> {
        let mark = format!(
            "sandboxer-run-end-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let argv = agent(
            "hold",
            &[
                host.ssh.workdir.to_string(),
                host.slots.to_string(),
                host.ssh.packer.clone(),
                mark.clone(),
            ],
        );
        // The session's connection is shared with the build's rsyncs (each saves a handshake
        // and a login); signals and stops use connections of their own.
        let (control, control_path) = control_socket(client)?;
        let command = client.command(&host.ssh.target, &argv, batch(&host.ssh));
        let destination = command
            .get_args()
            .position(|arg| arg == "--")
            .context("ssh's command has no `--`")?;
        let mut args: Vec<std::ffi::OsString> = command.get_args().map(ToOwned::to_owned).collect();
        args.splice(
            destination..destination,
            crate::ssh::control_options(&control_path, true)
                .into_iter()
                .map(Into::into),
        );
        let mut command = Command::new(command.get_program());
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a terminal's Ctrl-C reaches sandboxer, which decides.
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting ssh to build host `{}`", host.name))?;
        let stdin = child.stdin.take().context("ssh's stdin")?;
        // As large as a pipe's buffer, as for Packer's output here.
        let stdout =
            BufReader::with_capacity(64 * 1024, child.stdout.take().context("ssh's stdout")?);
        let stderr = child.stderr.take().context("ssh's stderr")?;
        let said = Arc::new(Mutex::new(VecDeque::new()));
        let (sender, replies) = mpsc::channel();
        {
            let said = Arc::clone(&said);
            std::thread::Builder::new()
                .name("build-host-replies".to_owned())
                .spawn(move || read_replies(stderr, &sender, &said))
                .context("starting the reader of a build host's replies")?;
        }
        let mut session = HostSession {
            host: host.clone(),
            client: client.clone(),
            child,
            stdin: Some(stdin),
            stdout,
            replies,
            said,
            mark,
            slot: None,
            holder: Holder {
                pid: 0,
                started: None,
                boot_id: String::new(),
            },
            dir: None,
            running: None,
            packer_version: None,
            closed: false,
            control_path,
            _control: control,
        };
        // ssh's ConnectTimeout covers the connect, the handshake and the login; the agent's
        // checks take moments. Anything slower is a host that does not answer.
        let deadline = host.ssh.connect_timeout * 2 + Duration::from_secs(5);
        match session.reply(Some(deadline), cancel, "a build slot")? {
            Reply::Full => {
                session.closed = true;
                let _ = session.child.wait();
                Ok(Opened::Full)
            }
            Reply::Slot {
                slot,
                pid,
                started,
                boot_id,
            } => {
                session.slot = slot;
                session.holder = Holder {
                    pid,
                    started,
                    boot_id,
                };
                Ok(Opened::Held(Box::new(session)))
            }
            other => Err(session.unexpected(&other)),
        }
    }

    pub fn host(&self) -> &BuildHost {
        &self.host
    }

    /// `<workdir>/<sandbox-id>` on the host, once made.
    pub fn dir(&self) -> Option<&Utf8Path> {
        self.dir.as_deref()
    }

    /// Makes the build's directory on the host, `<workdir>/<sandbox-id>`, and returns it; learns
    /// the version of the host's Packer on the way.
    pub fn sandbox(&mut self, id: &str, cancel: &Cancel) -> anyhow::Result<Utf8PathBuf> {
        self.request(&["sandbox".to_owned(), id.to_owned()])?;
        let dir = match self.reply(Some(SHORT_REQUEST), cancel, "the build directory")? {
            Reply::Dir(dir) => dir,
            other => return Err(self.unexpected(&other)),
        };
        self.dir = Some(dir.clone());
        match self.reply(Some(SHORT_REQUEST), cancel, "Packer's version")? {
            Reply::Version(said) => {
                self.packer_version = Some(said).filter(|said| !said.is_empty());
            }
            other => return Err(self.unexpected(&other)),
        }
        Ok(dir)
    }

    /// What `packer version` said first on the host (`Packer v1.6.6`), once
    /// [`HostSession::sandbox`] asked.
    pub fn packer_version(&self) -> Option<&str> {
        self.packer_version.as_deref()
    }

    /// Copies the contents of `local` into the build's directory on the host, following
    /// symlinks, keeping permissions (a private file stays private).
    pub fn ship(&self, local: &Utf8Path, cancel: &Cancel) -> anyhow::Result<()> {
        let dir = self.dir.as_ref().context("ship before sandbox")?;
        let args = vec![
            "--recursive".to_owned(),
            "--copy-links".to_owned(),
            "--perms".to_owned(),
            "--times".to_owned(),
            // Names travel inside rsync's protocol, never through the host's shell.
            "--protect-args".to_owned(),
            "--".to_owned(),
            format!("{local}/"),
            format!("{}/", rsync_remote(&self.host.ssh.target, dir)),
        ];
        rsync(
            &self.client,
            &self.host,
            Some(&self.control_path),
            &args,
            cancel,
            &format!("copying {local} to build host `{}`", self.host.name),
        )
    }

    /// Starts Packer with `args` in the build's copy of the template directory, in a process
    /// group of its own on the host; its output (stdout and stderr) is read from the returned
    /// run until Packer exits.
    pub fn start(&mut self, args: &[String], cancel: &Cancel) -> anyhow::Result<RemoteRun<'_>> {
        let mut lines = vec!["run".to_owned(), args.len().to_string()];
        lines.extend(args.iter().map(|arg| encode(arg)));
        self.request(&lines)?;
        // Not cancellable: once asked, the agent starts Packer, and the caller must learn its
        // group to pass a cancel on (`Cancel::watch` does at once when one came meanwhile).
        let _ = cancel;
        match self.reply(Some(SHORT_REQUEST), &Cancel::new(), "Packer to start")? {
            Reply::Packer { pgid, started } => {
                self.running = Some((pgid, started));
                let group = RemoteGroup {
                    client: self.client.clone(),
                    host: self.host.clone(),
                    boot_id: self.holder.boot_id.clone(),
                    pgid,
                    started,
                };
                let end_mark = format!("{} exit ", self.mark).into_bytes();
                Ok(RemoteRun {
                    session: self,
                    group,
                    end_mark,
                    exit: None,
                    pending: Vec::new(),
                    served: 0,
                })
            }
            other => Err(self.unexpected(&other)),
        }
    }

    /// Hashes `paths` and every `*.ova` in the build's output directory on the host, each file
    /// once (by its real path, first as asked); files that do not exist are left out.
    pub fn hash(
        &mut self,
        paths: &[Utf8PathBuf],
        cancel: &Cancel,
    ) -> anyhow::Result<Vec<RemoteFile>> {
        let mut lines = vec!["hash".to_owned(), paths.len().to_string()];
        lines.extend(paths.iter().map(|path| encode(path.as_str())));
        self.request(&lines)?;
        let mut files: Vec<RemoteFile> = Vec::new();
        loop {
            match self.reply(None, cancel, "artifact hashes")? {
                Reply::Hashed(file) => {
                    if !files.iter().any(|seen| seen.path == file.path) {
                        files.push(file);
                    }
                }
                Reply::HashedAll => return Ok(files),
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// Copies `files` from the host into `into` (each by its file name).
    pub fn fetch(
        &self,
        files: &[Utf8PathBuf],
        into: &Utf8Path,
        cancel: &Cancel,
    ) -> anyhow::Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut args = vec![
            "--times".to_owned(),
            // Names travel inside rsync's protocol, never through the host's shell.
            "--protect-args".to_owned(),
            "--".to_owned(),
        ];
        for (at, file) in files.iter().enumerate() {
            args.push(if at == 0 {
                rsync_remote(&self.host.ssh.target, file)
            } else {
                format!(":{file}")
            });
        }
        args.push(format!("{into}/"));
        rsync(
            &self.client,
            &self.host,
            Some(&self.control_path),
            &args,
            cancel,
            &format!(
                "copying artifacts back from build host `{}`",
                self.host.name
            ),
        )
    }

    /// Removes the secrets var file and Packer's temporary files from the host; not
    /// cancellable, as it is what must happen whatever else does.
    pub fn scrub(&mut self) -> anyhow::Result<()> {
        self.request(&["scrub".to_owned()])?;
        match self.reply(Some(SHORT_REQUEST), &Cancel::new(), "the scrub")? {
            Reply::Scrubbed => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Ends the agent, keeping the build's directory or removing it, and so releases the slot.
    pub fn close(mut self, keep: bool) -> anyhow::Result<()> {
        self.request(&[
            "end".to_owned(),
            if keep { "keep" } else { "remove" }.to_owned(),
        ])?;
        // Not cancellable: a cancelled build still ends its session properly. Answers to
        // requests a cancel stopped waiting for may come first: they no longer matter.
        let ended = loop {
            match self.reply(
                Some(SHORT_REQUEST),
                &Cancel::new(),
                "the end of the session",
            )? {
                Reply::Ended => break Ok(()),
                Reply::Dir(_)
                | Reply::Version(_)
                | Reply::Scrubbed
                | Reply::Hashed(_)
                | Reply::HashedAll => {}
                other => break Err(self.unexpected(&other)),
            }
        };
        self.closed = true;
        drop(self.stdin.take());
        let _ = wait_at_most(&mut self.child, Duration::from_secs(10));
        ended
    }

    /// Packer's process group on the host, when a run started and was not seen to end.
    pub fn running_group(&self) -> Option<(u32, Option<u64>)> {
        self.running
    }

    fn request(&mut self, lines: &[String]) -> anyhow::Result<()> {
        let mut text = lines.join("\n");
        text.push('\n');
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(text.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        match written {
            Ok(()) => Ok(()),
            Err(_) => Err(self.lost()),
        }
    }

    /// The agent's next reply; its `error` as an error, a closed connection as the reason it
    /// closed. Waits at most `timeout` (then the host counts as gone), and stops at a cancel.
    fn reply(
        &mut self,
        timeout: Option<Duration>,
        cancel: &Cancel,
        waiting_for: &str,
    ) -> anyhow::Result<Reply> {
        let started = Instant::now();
        loop {
            if let Some(signal) = cancel.requested() {
                return Err(cancelled_error(
                    signal,
                    &format!(
                        "while waiting for {waiting_for} on build host `{}`",
                        self.host.name
                    ),
                ));
            }
            match self.replies.recv_timeout(Duration::from_millis(50)) {
                Ok(Reply::Error(message)) => {
                    return Err(Error::new(
                        ErrorKind::Failed,
                        format!("build host `{}`: {message}", self.host.name),
                    )
                    .into());
                }
                Ok(reply) => return Ok(reply),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.lost()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if timeout.is_some_and(|timeout| started.elapsed() >= timeout) {
                let _ = process::signal_group(self.child.id(), Signal::KILL);
                return Err(Error::new(
                    ErrorKind::Failed,
                    format!(
                        "build host `{}` ({}) did not answer within {}s while sandboxer waited for {waiting_for}",
                        self.host.name,
                        self.host.ssh.target.describe(),
                        timeout.unwrap_or_default().as_secs()
                    ),
                )
                .into());
            }
        }
    }

    fn unexpected(&mut self, reply: &Reply) -> anyhow::Error {
        anyhow::anyhow!(
            "build host `{}` answered something sandboxer did not expect: {reply:?}",
            self.host.name
        )
    }

    /// Why the connection ended: ssh's own failure (it exits 255), or the agent's last words.
    fn lost(&mut self) -> anyhow::Error {
        self.closed = true;
        drop(self.stdin.take());
        let status = wait_at_most(&mut self.child, Duration::from_secs(5));
        if status.is_none() {
            // A connection that hangs rather than closes: ssh must not linger.
            let _ = process::signal_group(self.child.id(), Signal::KILL);
            let _ = self.child.wait();
        }
        let said: Vec<String> = self
            .said
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect();
        let said = said.join("\n");
        let target = &self.host.ssh.target;
        let reason = match status.and_then(|status| status.code()) {
            Some(255) => self.client.classify(target, &said).to_string(),
            _ if said.trim().is_empty() => "the connection closed".to_owned(),
            _ => said.lines().last().unwrap_or_default().trim().to_owned(),
        };
        // Before the agent answered, the host was never reached; after, it was lost.
        let what = if self.holder.boot_id.is_empty() {
            "cannot reach"
        } else {
            "lost"
        };
        Error::new(
            ErrorKind::Failed,
            format!(
                "{what} build host `{}` ({}): {reason}",
                self.host.name,
                target.describe()
            ),
        )
        .into()
    }
}

impl Drop for HostSession {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // End of input: the agent scrubs, keeps the directory, and exits, releasing the slot.
        // A connection not yet established (a cancel while connecting) has nothing to end.
        drop(self.stdin.take());
        let grace = if self.holder.boot_id.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        };
        if wait_at_most(&mut self.child, grace).is_none() {
            let _ = process::signal_group(self.child.id(), Signal::KILL);
            let _ = self.child.wait();
        }
    }
}

/// A private directory for a session's control socket, and the socket's path: beside
/// sandboxer's known_hosts file (in the state directory), or in `/tmp` when that path would be
/// too long for a Unix socket (108 bytes, with room for ssh's temporary suffix).
fn control_socket(client: &SshClient) -> anyhow::Result<(tempfile::TempDir, Utf8PathBuf)> {
    const MAX_SOCKET_PATH: usize = 80;
    let near_known_hosts = client
        .known_hosts()
        .parent()
        .filter(|dir| dir.as_str().len() + "/c-XXXXXX/s".len() <= MAX_SOCKET_PATH)
        .map(Utf8Path::to_owned);
    let dir = near_known_hosts.unwrap_or_else(|| Utf8PathBuf::from("/tmp"));
    let control = tempfile::Builder::new()
        .prefix("c-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&dir)
        .with_context(|| format!("creating a directory for ssh's control socket in {dir}"))?;
    let path = Utf8Path::from_path(control.path())
        .context("the control socket's directory is not UTF-8")?
        .join("s");
    Ok((control, path))
}

/// Waits for `child` to exit, at most `timeout`; its status, or `None` when it still runs.
fn wait_at_most(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Sorts the agent's replies from everything else on the connection's stderr (ssh's own
/// complaints, kept for messages).
fn read_replies(stderr: impl Read, replies: &mpsc::Sender<Reply>, said: &Mutex<VecDeque<String>>) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        match text.strip_prefix(AGENT_PREFIX) {
            Some(reply) => {
                let reply = Reply::parse(reply);
                if let Reply::Error(message) = &reply {
                    remember(said, message);
                }
                if replies.send(reply).is_err() {
                    return;
                }
            }
            None => remember(said, text),
        }
    }
}

fn remember(said: &Mutex<VecDeque<String>>, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    let mut said = said.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if said.len() == SAID_LINES {
        said.pop_front();
    }
    said.push_back(line.to_owned());
}

/// One Packer run on a build host: its output, read until the agent's end mark.
pub struct RemoteRun<'a> {
    session: &'a mut HostSession,
    group: RemoteGroup,
    /// What starts the agent's last line: the session's mark, then Packer's exit status.
    end_mark: Vec<u8>,
    /// Packer's exit status, once the end mark was read.
    exit: Option<i32>,
    /// The line being handed out, and how much of it has been.
    pending: Vec<u8>,
    served: usize,
}

/// Lines longer than this are handed on in pieces (the runner keeps at most 64 KiB of one).
const LINE_PIECE: usize = 64 * 1024;

impl RemoteRun<'_> {
    /// Packer's process group on the host.
    pub fn group(&self) -> &RemoteGroup {
        &self.group
    }

    /// How Packer ended: its exit status, or why its output ended early (the connection, or
    /// the host, went away).
    pub fn finish(self) -> anyhow::Result<i32> {
        match self.exit {
            Some(code) => Ok(code),
            None => Err(self.session.lost()),
        }
    }

    /// Whether reading the next line (or piece of one) would not wait for the host.
    fn next_line_arrived(&self) -> bool {
        let buffered = self.session.stdout.buffer();
        self.exit.is_none()
            && (buffered.len() >= LINE_PIECE || memchr::memchr(b'\n', buffered).is_some())
    }

    /// Reads the next line (or piece of one) into `pending`; false at the end of the run.
    fn next_line(&mut self) -> std::io::Result<bool> {
        if self.exit.is_some() {
            return Ok(false);
        }
        self.pending.clear();
        self.served = 0;
        let mut limited = (&mut self.session.stdout).take(LINE_PIECE as u64);
        limited.read_until(b'\n', &mut self.pending)?;
        if self.pending.is_empty() {
            return Ok(false); // the connection ended before the run did
        }
        let whole = self.pending.ends_with(b"\n");
        if whole && let Some(at) = memchr::memmem::find(&self.pending, &self.end_mark) {
            let status = std::str::from_utf8(&self.pending[at + self.end_mark.len()..])
                .ok()
                .and_then(|rest| rest.trim().parse().ok());
            self.exit = Some(status.unwrap_or(-1));
            self.session.running = None;
            // Output that ended without a newline is glued to the mark: keep it.
            self.pending.truncate(at);
            return Ok(!self.pending.is_empty());
        }
        Ok(true)
    }
}

impl Read for RemoteRun<'_> {
    /// Hands out as many lines as have arrived whole, so that the runner's reader passes on a
    /// burst of output as one batch; waits for the host only while it has nothing to return.
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            if self.served == self.pending.len() {
                if filled > 0 && !self.next_line_arrived() {
                    break;
                }
                if !self.next_line()? {
                    break;
                }
            }
            let left = &self.pending[self.served..];
            let count = left.len().min(buffer.len() - filled);
            buffer[filled..filled + count].copy_from_slice(&left[..count]);
            self.served += count;
            filled += count;
        }
        Ok(filled)
    }
}

/// A process group on a build host, signalled over a connection of its own: `ssh` forwards no
/// signals without a terminal, and the build's own connection is busy streaming its output.
#[derive(Debug, Clone)]
pub struct RemoteGroup {
    client: SshClient,
    host: BuildHost,
    boot_id: String,
    pub pgid: u32,
    pub started: Option<u64>,
}

impl RemoteGroup {
    /// Sends `signal` to the group if it is still the one that was started; waits for the
    /// host's answer.
    pub fn send(&self, signal: Signal) -> anyhow::Result<()> {
        let name = match signal {
            Signal::INT => "INT",
            Signal::TERM => "TERM",
            _ => "KILL",
        };
        let argv = agent(
            "signal",
            &[
                self.boot_id.clone(),
                self.pgid.to_string(),
                self.started
                    .map_or_else(|| "-".to_owned(), |started| started.to_string()),
                name.to_owned(),
            ],
        );
        run_agent(
            &self.client,
            &self.host,
            &argv,
            Some(Duration::from_secs(60)),
        )
        .map(drop)
    }
}

impl Stopper for RemoteGroup {
    fn signal(&self, signal: Signal) {
        // Reaching the host takes a connection: never on the caller's (the signal thread's)
        // time. The ssh child leads its own group, so it finishes even if sandboxer exits.
        let group = self.clone();
        let _ = std::thread::Builder::new()
            .name("build-host-signal".to_owned())
            .spawn(move || {
                let _ = group.send(signal);
            });
    }
}

/// Runs the agent with `argv` on `host` and returns what it said; its `error` as an error.
fn run_agent(
    client: &SshClient,
    host: &BuildHost,
    argv: &[String],
    deadline: Option<Duration>,
) -> anyhow::Result<Vec<String>> {
    let output = client
        .run(
            &host.ssh.target,
            argv,
            host.ssh.connect_timeout,
            deadline,
            &Cancel::new(),
            &mut Quiet,
        )
        .with_context(|| format!("reaching build host `{}`", host.name))?;
    let mut replies = Vec::new();
    for line in output.stderr.lines() {
        if let Some(reply) = line.strip_prefix(AGENT_PREFIX) {
            if let Some(message) = reply.strip_prefix("error ") {
                anyhow::bail!("build host `{}`: {message}", host.name);
            }
            replies.push(reply.to_owned());
        }
    }
    anyhow::ensure!(
        output.exit_code == 0,
        "the agent on build host `{}` exited with code {}: {}",
        host.name,
        output.exit_code,
        output.stderr.lines().last().unwrap_or_default()
    );
    Ok(replies)
}

/// Where the events of helper connections go: nowhere, they show nothing.
struct Quiet;

impl Progress for Quiet {
    fn publish(&mut self, _kind: Kind) {}
    fn emit(&mut self, _event: &Event) {}
}

/// Runs rsync with sandboxer's ssh options for `host`; a cancel stops it.
fn rsync(
    client: &SshClient,
    host: &BuildHost,
    control: Option<&Utf8Path>,
    args: &[String],
    cancel: &Cancel,
    doing: &str,
) -> anyhow::Result<()> {
    let mut command = Command::new("rsync");
    command
        .arg("-e")
        .arg(client.rsync_shell_sharing(&host.ssh.target, batch(&host.ssh), control))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{doing}: `rsync` not found on PATH; install it (Debian: `apt-get install rsync`)"
            )
        } else {
            anyhow::Error::new(err).context(format!("{doing}: starting rsync"))
        }
    })?;
    cancel.watch_group(child.id());
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait();
    cancel.unwatch_group();
    if let Some(signal) = cancel.requested() {
        return Err(cancelled_error(signal, &format!("while {doing}")));
    }
    let status = status.with_context(|| format!("{doing}: waiting for rsync"))?;
    if status.success() {
        return Ok(());
    }
    let said = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>();
    let reason = match status.code() {
        Some(code) => format!("rsync exit code {code}"),
        None => "rsync was killed".to_owned(),
    };
    Err(Error::new(
        ErrorKind::Failed,
        format!(
            "{doing} failed ({reason}): {}",
            said.first().copied().unwrap_or("rsync said nothing")
        ),
    )
    .into())
}

/// What a gc or teardown found and did on a build host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Packer's group still ran, and was stopped (the holder with it).
    Build,
    /// Only the holder was left; it was killed.
    Holder,
    /// Nothing of the build ran any more (or the host rebooted since).
    Nothing,
}

/// Stops what a build whose sandboxer died left on its host: Packer's group (SIGINT, a grace
/// period, SIGKILL) and the holder, each only if it is still the process that was recorded.
pub fn stop(
    client: &SshClient,
    host: &BuildHost,
    holder: &Holder,
    packer: Option<(u32, Option<u64>)>,
    grace: Duration,
) -> anyhow::Result<Stopped> {
    let started =
        |started: Option<u64>| started.map_or_else(|| "-".to_owned(), |at| at.to_string());
    let (pgid, pgid_started) = match packer {
        Some((pgid, at)) => (pgid.to_string(), started(at)),
        None => ("-".to_owned(), "-".to_owned()),
    };
    let argv = agent(
        "stop",
        &[
            holder.boot_id.clone(),
            holder.pid.to_string(),
            started(holder.started),
            pgid,
            pgid_started,
            grace.as_secs().to_string(),
        ],
    );
    let replies = run_agent(client, host, &argv, Some(grace + Duration::from_secs(60)))?;
    let stopped = replies
        .iter()
        .find_map(|reply| reply.strip_prefix("stopped "))
        .context("the agent said nothing about what it stopped")?;
    Ok(match stopped {
        "build" => Stopped::Build,
        "holder" => Stopped::Holder,
        _ => Stopped::Nothing,
    })
}

/// Removes a build's directory on its host (`<workdir>/<sandbox-id>`).
pub fn remove(client: &SshClient, host: &BuildHost, sandbox_id: &str) -> anyhow::Result<()> {
    let argv = agent(
        "remove",
        &[host.ssh.workdir.to_string(), sandbox_id.to_owned()],
    );
    run_agent(client, host, &argv, Some(Duration::from_secs(300))).map(drop)
}

/// A build host's state, as `sandboxer hosts` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// `packer version`'s first line there; `None` when Packer is missing.
    pub packer: Option<String>,
    /// Slots held there (by any control machine).
    pub busy: u32,
}

/// Asks a host for its Packer version and how many slots are held, without taking one.
pub fn status(client: &SshClient, host: &BuildHost) -> anyhow::Result<HostStatus> {
    let argv = agent(
        "status",
        &[
            host.ssh.workdir.to_string(),
            host.slots.to_string(),
            host.ssh.packer.clone(),
        ],
    );
    let replies = run_agent(
        client,
        host,
        &argv,
        Some(host.ssh.connect_timeout * 2 + Duration::from_secs(30)),
    )?;
    let packer = replies
        .iter()
        .find_map(|reply| reply.strip_prefix("packer "))
        .filter(|version| *version != "missing")
        .map(str::to_owned);
    let busy = replies
        .iter()
        .find_map(|reply| reply.strip_prefix("busy "))
        .and_then(|busy| busy.parse().ok())
        .context("the agent did not say how many slots are held")?;
    Ok(HostStatus { packer, busy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_the_encoding_as_the_agent_decodes_them() {
        let hostile = [
            "plain-value_1.0",
            "$(touch /tmp/pwned)",
            "`id`",
            "a'b\"c",
            "two words",
            "line\nbreak\n",
            "back\\slash \\0101",
            "%s %b",
            "é ✓",
            "",
        ];
        for value in hostile {
            let encoded = encode(value);
            assert!(!encoded.contains('\n'), "{encoded}");
            let decoded = std::process::Command::new("sh")
                .args([
                    "-c",
                    r#"v=$(printf '%bx' "$1"); printf '%s' "${v%x}""#,
                    "sh",
                    &encoded,
                ])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8(decoded.stdout).unwrap(),
                value,
                "{encoded}"
            );
        }
    }

    #[test]
    fn replies_are_parsed() {
        assert_eq!(
            Reply::parse("slot 1 4242 999 0b5c"),
            Reply::Slot {
                slot: Some(1),
                pid: 4242,
                started: Some(999),
                boot_id: "0b5c".into()
            }
        );
        assert_eq!(
            Reply::parse("slot - 4242 - 0b5c"),
            Reply::Slot {
                slot: None,
                pid: 4242,
                started: None,
                boot_id: "0b5c".into()
            }
        );
        assert_eq!(Reply::parse("dir 2f770a"), Reply::Dir("/w\n".into()));
        assert_eq!(
            Reply::parse("hashed abc 12 2f61 61"),
            Reply::Hashed(RemoteFile {
                path: "/a".into(),
                given: "a".into(),
                sha256: "abc".into(),
                bytes: 12
            })
        );
        assert_eq!(
            Reply::parse("error packer (x) is not on PATH"),
            Reply::Error("packer (x) is not on PATH".into())
        );
        assert_eq!(Reply::parse("full 2"), Reply::Full);
        assert!(matches!(Reply::parse("packer nope 1"), Reply::Other(_)));
        assert_eq!(unhex("2"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn rsync_remotes_bracket_ipv6() {
        let mut target = SshTarget {
            host: "b1.example".into(),
            port: 22,
            user: Some("ci".into()),
            identity: None,
        };
        assert_eq!(
            rsync_remote(&target, Utf8Path::new("/w/x")),
            "b1.example:/w/x"
        );
        target.host = "::1".into();
        assert_eq!(rsync_remote(&target, Utf8Path::new("/w/x")), "[::1]:/w/x");
    }
}
