//! Reaching machines with the system OpenSSH client: where a machine is ([`SshTarget`]), the
//! options sandboxer always passes (its own known_hosts file, an explicit host-key policy),
//! probing a port for an SSH server, running remote commands with their argv quoted for the
//! remote shell, telling failures apart ([`Failure`]), and the `-e` command line for rsync.
//!
//! Host keys: sandboxer keeps its own known_hosts file (under the state directory) and runs
//! `ssh` with `StrictHostKeyChecking=accept-new`: the first connection to a host and port
//! records its key, and a later connection that meets a different key is refused.
//! No configuration file is read (`-F none`), so what sandboxer probed is what ssh connects to.

use std::borrow::Cow;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::cancel::{Cancel, cancelled_error};
use crate::process;
use crate::progress::{Event, Progress};

/// Where a machine's SSH server is, and who to log in as. Holds a key's path, never its
/// contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    /// The login name; `ssh`'s default (the local user name) when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// The private key to log in with; `ssh`'s defaults (agent, `~/.ssh/id_*`) when absent.
    #[serde(default)]
    pub identity: Option<Utf8PathBuf>,
}

impl SshTarget {
    /// `host:port` (`[host]:port` for an IPv6 address), for messages.
    pub fn endpoint(&self) -> String {
        endpoint(&self.host, self.port)
    }

    /// `user@host:port`, or `host:port` without a user, for messages.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.endpoint()),
            None => self.endpoint(),
        }
    }

    /// The name `ssh` files the host's key under in known_hosts: `host`, or `[host]:port`
    /// for any port but 22.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A host name or IP address that is safe as `ssh`'s destination argument: letters, digits,
/// `.`, `-`, `_` and `:` (IPv6), not starting with `-`.
pub fn check_host(value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if valid {
        Ok(())
    } else {
        Err("is not a host name or IP address: use letters, digits, `.`, `-`, `_` and `:`, not starting with `-`".to_owned())
    }
}

/// A login name: letters, digits, `.`, `_` and `-`, not starting with `-`.
pub fn check_user(value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(
            "is not a user name: use letters, digits, `.`, `_` and `-`, not starting with `-`"
                .to_owned(),
        )
    }
}

/// A TCP port, 1 to 65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("is not a TCP port: use a whole number from 1 to 65535".to_owned()),
    }
}

/// Why reaching a machine failed, as far as a caller needs to tell cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused: nothing listens on the port.
    NothingListening,
    /// Something answered, but not with an SSH identification line.
    NotSsh,
    /// The server refused the login (the key, or the user).
    AuthRefused,
    /// The server's host key differs from the one in sandboxer's known_hosts file.
    HostKeyChanged,
    /// No answer in time: to the connect, for the banner, or for the login.
    TimedOut,
    /// The name does not resolve, or the network cannot reach the host.
    Unreachable,
    /// Anything else `ssh` reported.
    Other,
}

/// A failure to reach a machine, with a message that says which [`Failure`] it was.
#[derive(Debug)]
pub struct SshError {
    pub failure: Failure,
    message: String,
}

impl SshError {
    fn new(failure: Failure, message: impl Into<String>) -> Self {
        SshError {
            failure,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SshError {}

/// The [`Failure`] in an error's chain, if it has one.
pub fn failure_of(err: &anyhow::Error) -> Option<Failure> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<SshError>())
        .map(|error| error.failure)
}

/// How much a server may send before its identification line (RFC 4253 allows other lines
/// first) before sandboxer decides it is not an SSH server.
const MAX_BEFORE_BANNER: usize = 8 * 1024;

/// Connects to `host:port` and reads the server's identification line (`SSH-2.0-...`), the
/// connect and the banner together within `timeout`; returns the line. A cancel is noticed
/// within 50 ms: the probe runs on a thread of its own, left to finish (within `timeout`) on
/// its own.
pub fn probe(host: &str, port: u16, timeout: Duration, cancel: &Cancel) -> anyhow::Result<String> {
    let (sender, receiver) = mpsc::channel();
    let probed_host = host.to_owned();
    std::thread::Builder::new()
        .name("ssh-probe".to_owned())
        .spawn(move || {
            let _ = sender.send(probe_blocking(&probed_host, port, timeout));
        })
        .context("starting the SSH probe")?;
    loop {
        if let Some(signal) = cancel.requested() {
            return Err(cancelled_error(
                signal,
                &format!("while probing {}", endpoint(host, port)),
            ));
        }
        match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(result) => return result.map_err(Into::into),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("the SSH probe ended early"),
        }
    }
}

fn probe_blocking(host: &str, port: u16, timeout: Duration) -> Result<String, SshError> {
    let deadline = Instant::now() + timeout;
    let place = endpoint(host, port);
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|err| {
            SshError::new(
                Failure::Unreachable,
                format!("cannot resolve {host}: {err}"),
            )
        })?
        .collect();
    let mut stream = None;
    let mut refused = 0;
    let mut other = None;
    for address in &addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(address, left) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Err(err) => other = Some(err),
        }
    }
    let Some(mut stream) = stream else {
        return Err(if addresses.is_empty() {
            SshError::new(
                Failure::Unreachable,
                format!("{host} resolves to no address"),
            )
        } else if refused == addresses.len() {
            SshError::new(
                Failure::NothingListening,
                format!("nothing is listening on {place} (connection refused)"),
            )
        } else {
            match other {
                Some(err)
                    if !matches!(
                        err.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    SshError::new(
                        Failure::Unreachable,
                        format!("cannot connect to {place}: {err}"),
                    )
                }
                _ => SshError::new(
                    Failure::TimedOut,
                    format!(
                        "timed out: {place} did not accept a connection within {}",
                        seconds(timeout)
                    ),
                ),
            }
        });
    };

    let mut received: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(banner) = identification_line(&received) {
            return if banner.starts_with("SSH-2.0-") || banner.starts_with("SSH-1.99-") {
                Ok(banner)
            } else {
                Err(SshError::new(
                    Failure::NotSsh,
                    format!(
                        "{place} speaks an SSH protocol version sandboxer cannot use: {banner:?}"
                    ),
                ))
            };
        }
        if received.len() > MAX_BEFORE_BANNER {
            return Err(not_ssh(&place, &received));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = || {
            if received.is_empty() {
                SshError::new(
                    Failure::TimedOut,
                    format!(
                        "timed out: {place} accepted the connection but sent no SSH banner within {}",
                        seconds(timeout)
                    ),
                )
            } else {
                not_ssh(&place, &received)
            }
        };
        if left.is_zero() {
            return Err(timed_out());
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(if received.is_empty() {
                    SshError::new(
                        Failure::NotSsh,
                        format!(
                            "{place} closed the connection without sending an SSH banner: not an SSH server, or one refusing connections"
                        ),
                    )
                } else {
                    not_ssh(&place, &received)
                });
            }
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out());
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(SshError::new(
                    Failure::NotSsh,
                    format!("{place} broke the connection before sending an SSH banner: {err}"),
                ));
            }
        }
    }
}

/// The first complete line that starts with `SSH-`, without its line ending.
fn identification_line(received: &[u8]) -> Option<String> {
    let mut lines = received.split(|byte| *byte == b'\n');
    let _incomplete = lines.next_back();
    lines
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| line.starts_with(b"SSH-"))
        .map(|line| String::from_utf8_lossy(line).into_owned())
}

fn not_ssh(place: &str, received: &[u8]) -> SshError {
    let first = received
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    let said: String = String::from_utf8_lossy(first)
        .trim_end()
        .chars()
        .take(80)
        .collect();
    SshError::new(
        Failure::NotSsh,
        format!("{place} is not an SSH server: it said {said:?} instead of an SSH banner"),
    )
}

/// "10s", "2m30s": a timeout as people read it.
fn seconds(duration: Duration) -> String {
    crate::duration::Ttl::from_secs(duration.as_secs().max(1) as i64).to_string()
}

/// How `ssh` is to behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// No prompts (`BatchMode=yes`): a missing key or an unknown password fails at once; the
    /// connect and the banner exchange must finish within `connect_timeout`.
    Batch { connect_timeout: Duration },
    /// A person at a terminal: ssh may ask for a passphrase or password.
    Interactive,
}

/// The OpenSSH client as sandboxer runs it: which executable, and sandboxer's known_hosts file.
#[derive(Debug, Clone)]
pub struct SshClient {
    program: Utf8PathBuf,
    known_hosts: Utf8PathBuf,
}

/// What a remote command printed and how it ended.
#[derive(Debug)]
pub struct RemoteOutput {
    /// The remote command's exit code (never 255: that is `ssh`'s own failure).
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl SshClient {
    /// The `ssh` on `PATH`, with the known_hosts file at `known_hosts` (its directory must exist).
    pub fn find(known_hosts: &Utf8Path) -> anyhow::Result<SshClient> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let program = std::env::split_paths(&path_var)
            .map(|dir| dir.join("ssh"))
            .find(|candidate| is_executable(candidate))
            .and_then(|found| Utf8PathBuf::from_path_buf(found).ok())
            .context("`ssh` not found on PATH; install the OpenSSH client (Debian: `apt-get install openssh-client`)")?;
        Ok(SshClient::with_program(program, known_hosts.to_owned()))
    }

    /// A client running `program` (an `ssh` compatible with OpenSSH's options).
    pub fn with_program(program: Utf8PathBuf, known_hosts: Utf8PathBuf) -> SshClient {
        SshClient {
            program,
            known_hosts,
        }
    }

    pub fn known_hosts(&self) -> &Utf8Path {
        &self.known_hosts
    }

    /// Every option sandboxer passes to `ssh` for `target`, before the destination: no config
    /// file, sandboxer's known_hosts only, `accept-new`, the port, user and key, quiet.
    pub fn options(&self, target: &SshTarget, session: Session) -> Vec<String> {
        let mut options = vec!["-F".to_owned(), "none".to_owned()];
        let mut set = |name: &str, value: &str| {
            options.push("-o".to_owned());
            options.push(format!("{name}={value}"));
        };
        set("UserKnownHostsFile", &config_path(&self.known_hosts));
        set("GlobalKnownHostsFile", "/dev/null");
        // First sight records the key; a different key later is refused.
        set("StrictHostKeyChecking", "accept-new");
        set("CheckHostIP", "no");
        // The server may not add keys of its own choosing to sandboxer's file.
        set("UpdateHostKeys", "no");
        set("HashKnownHosts", "no");
        // Errors only: no "Permanently added ..." on a user's terminal.
        set("LogLevel", "ERROR");
        set("Port", &target.port.to_string());
        if let Some(user) = &target.user {
            set("User", user);
        }
        if let Some(identity) = &target.identity {
            set("IdentityFile", &config_path(identity));
            set("IdentitiesOnly", "yes");
        }
        if let Session::Batch { connect_timeout } = session {
            set("BatchMode", "yes");
            set(
                "ConnectTimeout",
                &connect_timeout.as_secs().max(1).to_string(),
            );
            // A host that dies without closing the connection (power, network) is noticed
            // after three unanswered keepalives, instead of never.
            set(
                "ServerAliveInterval",
                &connect_timeout.as_secs().clamp(1, 15).to_string(),
            );
            set("ServerAliveCountMax", "3");
        }
        options
    }

    /// A `ssh` command that runs `remote_argv` on `target`, each word quoted so the remote
    /// shell sees exactly these words; with no words, a login shell. Stdio is inherited.
    pub fn command(&self, target: &SshTarget, remote_argv: &[String], session: Session) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(self.options(target, session))
            .arg("--")
            .arg(&target.host);
        if !remote_argv.is_empty() {
            command.arg(remote_command_line(remote_argv));
        }
        command
    }

    /// The remote shell for `rsync -e`: `ssh` and its options, quoted the way rsync splits
    /// that string (on spaces; quotes group; a doubled quote inside quotes is a literal one).
    /// rsync appends the host itself: pass it `target.host` bare, without a user.
    pub fn rsync_shell(&self, target: &SshTarget, session: Session) -> String {
        self.rsync_shell_sharing(target, session, None)
    }

    /// The same, reusing the connection of a master ssh listening on `control` when there is
    /// one (`ControlPath`; ssh falls back to a connection of its own when the master is gone).
    pub fn rsync_shell_sharing(
        &self,
        target: &SshTarget,
        session: Session,
        control: Option<&Utf8Path>,
    ) -> String {
        let mut options = self.options(target, session);
        if let Some(control) = control {
            options.extend(control_options(control, false));
        }
        std::iter::once(self.program.to_string())
            .chain(options)
            .map(|word| rsync_quote(&word).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `remote_argv` on `target` in batch mode, its own process group, stdin closed, and
    /// collects its output; gives up after `deadline` (when given). A cancel reaches `ssh` at
    /// once. `ssh`'s own failures (exit code 255) come back as an [`SshError`].
    pub fn run(
        &self,
        target: &SshTarget,
        remote_argv: &[String],
        connect_timeout: Duration,
        deadline: Option<Duration>,
        cancel: &Cancel,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<RemoteOutput> {
        let mut command = self.command(target, remote_argv, Session::Batch { connect_timeout });
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a terminal's Ctrl-C reaches sandboxer, which decides (via `cancel`).
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.program))?;
        let pid = child.id();
        cancel.watch_group(pid);
        progress.emit(&Event::ToolStarted { pgid: pid });
        let mut stdout = child.stdout.take().context("ssh's stdout")?;
        let mut stderr = child.stderr.take().context("ssh's stderr")?;
        let stdout_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            bytes
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(Some(status)),
                Ok(None) => {}
                Err(err) => break Err(err),
            }
            if deadline.is_some_and(|deadline| started.elapsed() >= deadline) {
                let _ = process::signal_group(pid, rustix::process::Signal::KILL);
                let _ = child.wait();
                break Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        cancel.unwatch_group();
        // Whatever ssh left in its group (a ControlMaster, say) must not outlive it.
        let _ = process::signal_group(pid, rustix::process::Signal::KILL);
        progress.emit(&Event::ToolExited);
        let stdout = stdout_reader.join().unwrap_or_default();
        let stderr = stderr_reader.join().unwrap_or_default();
        let status = status.with_context(|| format!("waiting for {}", self.program))?;
        if let Some(signal) = cancel.requested() {
            return Err(cancelled_error(
                signal,
                &format!("while ssh ran on {}", target.endpoint()),
            ));
        }
        let Some(status) = status else {
            return Err(SshError::new(
                Failure::TimedOut,
                format!(
                    "timed out: ssh to {} did not finish within {}",
                    target.describe(),
                    seconds(deadline.unwrap_or_default())
                ),
            )
            .into());
        };
        match status.code() {
            Some(255) => Err(self.classify(target, &stderr).into()),
            Some(exit_code) => Ok(RemoteOutput {
                exit_code,
                stdout,
                stderr,
            }),
            None => Err(SshError::new(
                Failure::Other,
                format!("ssh to {} was killed by a signal", target.describe()),
            )
            .into()),
        }
    }

    /// Logs in to `target` with a real `ssh ... true` in batch mode (recording the host key
    /// on first sight, refusing a changed one), all within `timeout`.
    pub fn verify_login(
        &self,
        target: &SshTarget,
        timeout: Duration,
        cancel: &Cancel,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<()> {
        let output = self.run(
            target,
            &["true".to_owned()],
            timeout,
            Some(timeout),
            cancel,
            progress,
        )?;
        if output.exit_code == 0 {
            return Ok(());
        }
        Err(SshError::new(
            Failure::Other,
            format!(
                "logged in to {}, but `true` exited with code {}: {}",
                target.describe(),
                output.exit_code,
                last_line(&output.stderr)
            ),
        )
        .into())
    }

    /// Tells `ssh`'s failures apart by what it printed (it exits 255 for all of them).
    pub(crate) fn classify(&self, target: &SshTarget, stderr: &str) -> SshError {
        let place = target.endpoint();
        let said = last_line(stderr);
        let has = |needle: &str| stderr.contains(needle);
        if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key verification failed") {
            let forget = remote_command_line(&[
                "ssh-keygen".to_owned(),
                "-f".to_owned(),
                self.known_hosts.to_string(),
                "-R".to_owned(),
                target.known_hosts_name(),
            ]);
            return SshError::new(
                Failure::HostKeyChanged,
                format!(
                    "host key changed: {place} presented a different host key from the one sandboxer recorded in {}; refusing to connect (if the machine was rebuilt and the new key is expected, forget the old one with `{forget}` and try again)",
                    self.known_hosts
                ),
            );
        }
        if has("Permission denied")
            || has("Too many authentication failures")
            || has("No more authentication methods")
        {
            let key = target
                .identity
                .as_ref()
                .map(|identity| format!(" with key {identity}"))
                .unwrap_or_default();
            return SshError::new(
                Failure::AuthRefused,
                format!(
                    "authentication refused: {place} did not accept the login as {}{key} ({said})",
                    target.user.as_deref().unwrap_or("the local user name")
                ),
            );
        }
        if has("Connection refused") {
            return SshError::new(
                Failure::NothingListening,
                format!("nothing is listening on {place} (connection refused)"),
            );
        }
        if stderr.to_ascii_lowercase().contains("timed out") {
            return SshError::new(
                Failure::TimedOut,
                format!("timed out: {place} did not answer in time ({said})"),
            );
        }
        if has("kex_exchange_identification")
            || has("banner exchange")
            || has("Bad protocol version")
            || has("Protocol major versions differ")
        {
            return SshError::new(
                Failure::NotSsh,
                format!("{place} is not an SSH server ({said})"),
            );
        }
        if has("Could not resolve hostname")
            || has("No route to host")
            || has("Network is unreachable")
        {
            return SshError::new(
                Failure::Unreachable,
                format!("cannot reach {place} ({said})"),
            );
        }
        SshError::new(
            Failure::Other,
            format!("ssh to {} failed: {said}", target.describe()),
        )
    }
}

/// The last line that says something, for quoting `ssh`'s reason in a message.
fn last_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.starts_with('@'))
        .unwrap_or("no message")
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The options that make ssh the master of a shared connection listening on `control`
/// (`master`), or a client of it.
pub fn control_options(control: &Utf8Path, master: bool) -> Vec<String> {
    vec![
        "-o".to_owned(),
        format!("ControlPath={}", config_path(control)),
        "-o".to_owned(),
        format!("ControlMaster={}", if master { "yes" } else { "no" }),
        "-o".to_owned(),
        "ControlPersist=no".to_owned(),
    ]
}

/// A path as the value of an `ssh -o` option: double-quoted (so spaces survive ssh's
/// splitting), `\` and `"` escaped, and `%` doubled (ssh expands `%` tokens in these paths).
fn config_path(path: &Utf8Path) -> String {
    let mut quoted = String::with_capacity(path.as_str().len() + 2);
    quoted.push('"');
    for ch in path.as_str().chars() {
        match ch {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(ch);
            }
            '%' => quoted.push_str("%%"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// One word for a POSIX shell, in single quotes (a `'` inside becomes `'\''`), so the shell
/// takes it literally: no expansion, no splitting, no globbing, never a keyword or an
/// assignment.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `argv` as one command line for the remote user's shell, which `ssh` hands it to (`sh -c`):
/// every word quoted, so the remote shell runs exactly these words. Assumes a POSIX-style
/// login shell (sh, dash, bash, zsh, ksh).
pub fn remote_command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word of rsync's `-e` string: as it is when it has no space or quote, else in single
/// quotes with each `'` doubled.
fn rsync_quote(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && !word.contains([' ', '\'', '"']) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', "''")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            host: "127.0.0.1".to_owned(),
            port: 2222,
            user: Some("builder".to_owned()),
            identity: Some(Utf8PathBuf::from("/keys dir/it's 100%/id_ed25519")),
        }
    }

    /// How a POSIX shell splits a command line of single-quoted words (the subset
    /// `remote_command_line` produces), to check the round trip without a shell.
    fn split_single_quoted(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_quote = false;
        let mut started = false;
        let mut chars = line.chars();
        while let Some(ch) = chars.next() {
            match (ch, in_quote) {
                ('\'', _) => {
                    in_quote = !in_quote;
                    started = true;
                }
                ('\\', false) => {
                    word.push(chars.next().unwrap());
                    started = true;
                }
                (' ', false) => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                }
                (other, _) => {
                    word.push(other);
                    started = true;
                }
            }
        }
        if started {
            words.push(word);
        }
        words
    }

    #[test]
    fn remote_command_lines_keep_every_word_whole() {
        let hostile: Vec<String> = [
            "printf",
            "%s\\n",
            "$(touch /tmp/pwned)",
            "`id`",
            "a'b",
            "'",
            "",
            "two words",
            "*",
            "x; rm -rf /",
            "FOO=bar",
            "~",
            "line\nbreak",
        ]
        .iter()
        .map(|word| word.to_string())
        .collect();
        let line = remote_command_line(&hostile);
        assert_eq!(split_single_quoted(&line), hostile, "{line}");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    /// rsync's own splitting of `-e` (main.c, `do_cmd`): spaces separate, quotes group, and a
    /// doubled quote inside quotes is one literal quote.
    fn split_like_rsync(command: &str) -> Vec<String> {
        let mut words = Vec::new();
        let chars: Vec<char> = command.chars().collect();
        let mut at = 0;
        while at < chars.len() {
            if chars[at] == ' ' {
                at += 1;
                continue;
            }
            let mut word = String::new();
            let mut in_quote: Option<char> = None;
            while at < chars.len() && (chars[at] != ' ' || in_quote.is_some()) {
                let ch = chars[at];
                if ch == '\'' || ch == '"' {
                    match in_quote {
                        None => {
                            in_quote = Some(ch);
                            at += 1;
                            continue;
                        }
                        Some(quote) if quote == ch => {
                            if chars.get(at + 1) == Some(&ch) {
                                at += 1; // a doubled quote: one literal quote
                            } else {
                                in_quote = None;
                                at += 1;
                                continue;
                            }
                        }
                        Some(_) => {}
                    }
                }
                word.push(chars[at]);
                at += 1;
            }
            words.push(word);
        }
        words
    }

    #[test]
    fn the_rsync_shell_splits_back_into_ssh_and_its_options() {
        let client = SshClient::with_program(
            Utf8PathBuf::from("/usr/bin/ssh"),
            Utf8PathBuf::from("/state dir/ssh/known_hosts"),
        );
        let session = Session::Batch {
            connect_timeout: Duration::from_secs(10),
        };
        let shell = client.rsync_shell(&target(), session);
        let mut expected = vec!["/usr/bin/ssh".to_owned()];
        expected.extend(client.options(&target(), session));
        assert_eq!(split_like_rsync(&shell), expected, "{shell}");

        let control = Utf8Path::new("/tmp/it's 100%/c");
        let shared = client.rsync_shell_sharing(&target(), session, Some(control));
        expected.extend(control_options(control, false));
        assert_eq!(split_like_rsync(&shared), expected, "{shared}");
        assert!(
            shared.contains(r#"ControlPath="/tmp/it''s 100%%/c""#),
            "{shared}"
        );
    }

    #[test]
    fn options_name_the_known_hosts_file_and_the_key_and_quote_their_paths() {
        let client = SshClient::with_program(
            Utf8PathBuf::from("ssh"),
            Utf8PathBuf::from("/state dir/ssh/known_hosts"),
        );
        let options = client.options(&target(), Session::Interactive).join(" ");
        assert!(
            options.contains(r#"UserKnownHostsFile="/state dir/ssh/known_hosts""#),
            "{options}"
        );
        assert!(
            options.contains(r#"IdentityFile="/keys dir/it's 100%%/id_ed25519""#),
            "{options}"
        );
        assert!(
            options.contains("StrictHostKeyChecking=accept-new"),
            "{options}"
        );
        assert!(options.contains("IdentitiesOnly=yes"), "{options}");
        assert!(!options.contains("BatchMode"), "{options}");
        let command = client.command(
            &target(),
            &["echo".to_owned(), "a b".to_owned()],
            Session::Interactive,
        );
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[args.len() - 3..], ["--", "127.0.0.1", "'echo' 'a b'"]);
    }

    #[test]
    fn hosts_users_and_ports_are_checked() {
        assert!(check_host("hv1.example.org").is_ok());
        assert!(check_host("::1").is_ok());
        assert!(check_host("-oProxyCommand=x").is_err());
        assert!(check_host("a b").is_err());
        assert!(check_host("").is_err());
        assert!(check_user("build-er_1").is_ok());
        assert!(check_user("root@x").is_err());
        assert!(check_user("-l").is_err());
        assert_eq!(parse_port("2222"), Ok(2222));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("22x").is_err());
    }

    #[test]
    fn banners_are_found_after_other_lines_and_only_whole() {
        assert_eq!(
            identification_line(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian")
        );
        assert_eq!(
            identification_line(b"welcome\r\nSSH-2.0-x\r\n").as_deref(),
            Some("SSH-2.0-x")
        );
        assert_eq!(identification_line(b"SSH-2.0-x"), None);
        assert_eq!(identification_line(b"220 smtp ready\r\n"), None);
    }

    #[test]
    fn known_hosts_names_follow_ssh() {
        let mut target = target();
        assert_eq!(target.known_hosts_name(), "[127.0.0.1]:2222");
        assert_eq!(target.describe(), "builder@127.0.0.1:2222");
        target.port = 22;
        assert_eq!(target.known_hosts_name(), "127.0.0.1");
        target.host = "::1".to_owned();
        assert_eq!(target.endpoint(), "[::1]:22");
    }

    #[test]
    fn failures_are_told_apart_by_what_ssh_said() {
        let client = SshClient::with_program(
            Utf8PathBuf::from("ssh"),
            Utf8PathBuf::from("/state/ssh/known_hosts"),
        );
        let cases = [
            (
                "@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n",
                Failure::HostKeyChanged,
            ),
            (
                "builder@127.0.0.1: Permission denied (publickey).\n",
                Failure::AuthRefused,
            ),
            (
                "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n",
                Failure::NothingListening,
            ),
            (
                "Connection timed out during banner exchange\n",
                Failure::TimedOut,
            ),
            (
                "kex_exchange_identification: Connection closed by remote host\n",
                Failure::NotSsh,
            ),
            (
                "ssh: Could not resolve hostname nowhere: Name or service not known\n",
                Failure::Unreachable,
            ),
            ("something else entirely\n", Failure::Other),
        ];
        for (stderr, failure) in cases {
            assert_eq!(
                client.classify(&target(), stderr).failure,
                failure,
                "{stderr}"
            );
        }
        let changed = client
            .classify(&target(), "Host key verification failed.\n")
            .to_string();
        assert!(
            changed
                .contains("`'ssh-keygen' '-f' '/state/ssh/known_hosts' '-R' '[127.0.0.1]:2222'`"),
            "{changed}"
        );
    }
}
