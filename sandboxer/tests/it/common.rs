//! A harness for running the real `sandboxer` binary in a throwaway state dir, cwd, config dir
//! and `HOME`, so that neither the user's configuration nor another test can leak in.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Where `name` is on `PATH`; fails the test, naming the tool, when it is not there: a test
/// never skips silently.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate));
    let package = match name {
        "packer" => " (Debian: apt-get install packer)",
        "qemu-img" => " (Debian: apt-get install qemu-utils)",
        "kill" => " (Debian: apt-get install procps)",
        "strace" => " (Debian: apt-get install strace)",
        "shellcheck" => " (Debian: apt-get install shellcheck)",
        "ssh" | "ssh-keygen" => " (Debian: apt-get install openssh-client)",
        "rsync" => " (Debian: apt-get install rsync)",
        _ => "",
    };
    found.unwrap_or_else(|| {
        panic!(
            "required tool `{name}` is not on PATH{package}; run `cargo xtask setup` (or `make check`) \
             to install it, the test does not skip"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The workspace's `tests/fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .canonicalize()
        .unwrap()
}

/// Variables of the test's own environment that never reach sandboxer: sandboxer's own
/// settings, Packer's (logging, config, cache, `PKR_VAR_*` template variables), and Packer's
/// version check switch, which sandboxer must turn off itself.
const SCRUBBED_ENV_PREFIXES: &[&str] = &["SANDBOXER_", "PACKER_", "PKR_VAR_", "STATE_HUB_"];
const SCRUBBED_ENV: &[&str] = &["XDG_STATE_HOME", "CHECKPOINT_DISABLE", "NO_COLOR"];

/// One isolated sandboxer installation, all below one temporary root: its state dir
/// (`SANDBOXER_HOME`), config dir (`XDG_CONFIG_HOME`), `HOME` and working directory.
pub struct Sandboxer {
    _temp: TempDir,
    /// The temporary root, canonical (so paths sandboxer prints compare equal to ours).
    root: PathBuf,
    state: PathBuf,
    cwd: PathBuf,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Sandboxer {
    pub fn new() -> Self {
        let temp = tempfile::Builder::new()
            .prefix("sandboxer-it-")
            .tempdir()
            .unwrap();
        let root = temp.path().canonicalize().unwrap();
        let cwd = root.join("cwd");
        for dir in [&cwd, &root.join("config"), &root.join("user-home")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        Sandboxer {
            _temp: temp,
            state: root.join("state"),
            cwd,
            root,
            env: Vec::new(),
        }
    }

    /// Adds an environment variable to every later run.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.set_env(name, value);
        self
    }

    /// Sets an environment variable for every later run (any bytes, UTF-8 or not).
    pub fn set_env(&mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) {
        self.env.push((name.to_owned(), value.as_ref().to_owned()));
    }

    /// Points `SANDBOXER_HOME` somewhere else.
    pub fn with_state_dir(mut self, state: PathBuf) -> Self {
        self.state = state;
        self
    }

    /// Points `SANDBOXER_HOME` somewhere else for every later run.
    pub fn set_state_dir(&mut self, state: &Path) {
        self.state = state.to_owned();
    }

    /// `SANDBOXER_HOME`.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The directory sandboxer runs in.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The temporary root: a scratch directory, outside the cwd and the state dir, that goes
    /// away with the test.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.state.join("sandboxes").join(id)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// Like [`Sandboxer::command`], but runs sandboxer under `wrapper` (a program and its
    /// arguments, e.g. strace injecting a fault), with the same environment and directory.
    pub fn command_under(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let sandboxer = env!("CARGO_BIN_EXE_sandboxer");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(sandboxer);
                command
            }
            None => Command::new(sandboxer),
        };
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if SCRUBBED_ENV_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
            {
                command.env_remove(&*name);
            }
        }
        command
            .args(args)
            .current_dir(&self.cwd)
            .env("SANDBOXER_HOME", &self.state)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("HOME", self.root.join("user-home"))
            .stdin(Stdio::null());
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run::new(args, output)
    }

    /// Runs sandboxer to completion in `dir` instead of the cwd.
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Run {
        let output = self.command(args).current_dir(dir).output().unwrap();
        Run::new(args, output)
    }

    /// Starts sandboxer without waiting; its output is captured for [`Run::from_child`].
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts sandboxer without waiting, its stderr readable line by line while it runs.
    pub fn start(&self, args: &[&str]) -> Running {
        let mut child = self.spawn(args);
        let stderr = BufReader::new(child.stderr.take().unwrap());
        Running {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            child,
            stderr,
            seen: String::new(),
        }
    }

    /// Copies `tests/fixtures/templates/NAME` into `cwd/templates/NAME` and returns that path
    /// relative to the cwd, as a user would type it: Packer runs in the template's directory,
    /// and the repository must stay untouched.
    pub fn fixture(&self, name: &str) -> String {
        let from = fixtures().join("templates").join(name);
        assert!(from.is_dir(), "no fixture directory {}", from.display());
        copy_dir(&from, &self.cwd.join("templates").join(name));
        format!("templates/{name}")
    }

    /// Writes a profile into `./profiles/`, where sandboxer looks by default.
    pub fn write_profile(&self, file: &str, text: &str) {
        self.write_profile_in("profiles", file, text);
    }

    /// Writes a profile into `cwd/DIR/` and returns that directory, for `--profiles-dir`.
    pub fn write_profile_in(&self, dir: &str, file: &str, text: &str) -> String {
        let dir = self.cwd.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        dir.to_str().unwrap().to_owned()
    }

    /// The record as stored on disk, without reconciling.
    pub fn stored_record(&self, id: &str) -> Value {
        let path = self.sandbox_dir(id).join("record.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        serde_json::from_slice(&bytes).expect("record.json is JSON")
    }

    pub fn show(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).success().json()
    }

    /// The only record `list --all --json` shows.
    pub fn only_record(&self) -> Value {
        let list = self.run(&["list", "--all", "--json"]).success().json();
        let records = list.as_array().expect("list --json prints an array");
        assert_eq!(records.len(), 1, "expected exactly one sandbox: {list:#}");
        records[0].clone()
    }

    /// Entries of `$SANDBOXER_HOME/sandboxes`, hidden ones (half-made allocations) included.
    pub fn sandbox_entries(&self) -> Vec<String> {
        let dir = self.state.join("sandboxes");
        match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => panic!("reading {}: {err}", dir.display()),
        }
    }

    /// Sandbox ids on disk, oldest first.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sandbox_entries()
            .into_iter()
            .filter(|name| !name.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }

    /// Waits for the newest sandbox to reach `state` (as `show` reports it) and returns its id.
    pub fn wait_for_state(&self, state: &str) -> String {
        wait_until(
            Duration::from_secs(30),
            &format!("a sandbox in state {state}"),
            || {
                let id = self.ids().pop()?;
                let record = self.stored_record(&id);
                (record["state"] == state).then_some(id)
            },
        )
    }

    /// Waits until the sandbox's record names the running Packer's process group.
    pub fn wait_for_pgid(&self, id: &str) -> u32 {
        wait_until(
            Duration::from_secs(30),
            "packer's process group in the record",
            || {
                let record = self.stored_record(id);
                record["owner"]["pgid"].as_u64().map(|pgid| pgid as u32)
            },
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, failing the test after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a sandboxer started with [`Sandboxer::spawn`] to exit, at most `limit`: past it,
/// kills sandboxer and the process group `group` (so nothing outlives the test) and fails.
pub fn finish_within(args: &[&str], child: Child, limit: Duration, group: u32) -> Run {
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => {
            waiter.join().unwrap();
            Run::new(args, output.unwrap())
        }
        Err(_) => {
            signal_if_there(&pid.to_string(), "KILL");
            signal_if_there(&format!("-{group}"), "KILL");
            panic!("sandboxer {args:?} was still running after {limit:?}");
        }
    }
}

/// What one run of sandboxer printed and returned.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn new(args: &[&str], output: Output) -> Self {
        Run {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("sandboxer's stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("sandboxer's stderr is UTF-8"),
        }
    }

    pub fn from_child(args: &[&str], child: Child) -> Self {
        Run::new(args, child.wait_with_output().unwrap())
    }

    /// The command, its exit code and everything it printed, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "sandboxer {:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    pub fn code(self, expected: i32) -> Self {
        assert_eq!(self.code, Some(expected), "{}", self.describe());
        self
    }

    pub fn success(self) -> Self {
        self.code(0)
    }

    /// Stdout as exactly one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", self.describe()))
    }

    pub fn stdout_contains(self, needle: &str) -> Self {
        self.assert_contains("stdout", &self.stdout, needle);
        self
    }

    pub fn stderr_contains(self, needle: &str) -> Self {
        self.assert_contains("stderr", &self.stderr, needle);
        self
    }

    fn assert_contains(&self, what: &str, text: &str, needle: &str) {
        assert!(
            text.contains(needle),
            "{what} lacks {needle:?}: {}",
            self.describe()
        );
    }

    /// The `error: ...` message sandboxer printed on stderr (after any progress), to the end.
    pub fn error_message(&self) -> &str {
        let at = if self.stderr.starts_with("error: ") {
            0
        } else {
            self.stderr
                .rfind("\nerror: ")
                .map(|at| at + 1)
                .unwrap_or_else(|| panic!("no `error:` line on stderr: {}", self.describe()))
        };
        &self.stderr[at..]
    }

    /// Checks that the [`Run::error_message`] contains `needle`.
    pub fn error_contains(self, needle: &str) -> Self {
        self.assert_contains("the error", self.error_message(), needle);
        self
    }
}

/// A sandboxer still running, started by [`Sandboxer::start`].
pub struct Running {
    args: Vec<String>,
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// Stderr read so far.
    seen: String,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads stderr until a line contains `needle`; fails if sandboxer ends first.
    pub fn wait_for_stderr(&mut self, needle: &str) {
        self.wait_for_stderr_any(&[needle]);
    }

    /// Reads stderr until a line contains one of `needles` and returns that needle's index;
    /// fails if sandboxer ends first.
    pub fn wait_for_stderr_any(&mut self, needles: &[&str]) -> usize {
        loop {
            let mut line = String::new();
            if self.stderr.read_line(&mut line).expect("reading stderr") == 0 {
                let _ = self.child.kill();
                panic!(
                    "sandboxer {:?} ended before printing any of {needles:?}:\n{}",
                    self.args, self.seen
                );
            }
            self.seen.push_str(&line);
            if let Some(found) = needles.iter().position(|needle| line.contains(needle)) {
                return found;
            }
        }
    }

    /// Stderr read so far.
    pub fn stderr_so_far(&self) -> &str {
        &self.seen
    }

    /// Waits for sandboxer to exit, at most `limit`: past it, cancels sandboxer (and so its
    /// build) and fails the test.
    pub fn finish_within(self, limit: Duration) -> Run {
        let pid = self.id();
        let args = self.args.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(self.finish());
        });
        if let Ok(run) = receiver.recv_timeout(limit) {
            return run;
        }
        // Ctrl-C, then a second one (which kills the build at once), then SIGKILL.
        signal_if_there(&pid.to_string(), "CONT");
        for sig in ["INT", "INT", "KILL"] {
            signal_if_there(&pid.to_string(), sig);
            if receiver.recv_timeout(Duration::from_secs(5)).is_ok() {
                break;
            }
        }
        panic!("sandboxer {args:?} was still running after {limit:?}");
    }

    /// Waits for sandboxer to exit.
    pub fn finish(mut self) -> Run {
        self.stderr
            .read_to_string(&mut self.seen)
            .expect("reading stderr");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .expect("reading stdout");
        let status = self.child.wait().unwrap();
        Run {
            args: std::mem::take(&mut self.args),
            code: status.code(),
            stdout,
            stderr: std::mem::take(&mut self.seen),
        }
    }
}

impl Drop for Running {
    /// A test that fails while sandboxer still runs cancels it (Ctrl-C, then a second one),
    /// so that the build it started does not outlive the test.
    fn drop(&mut self) {
        if !std::thread::panicking() || !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // A test may have stopped it (SIGSTOP) to hold it in place.
        signal_if_there(&self.id().to_string(), "CONT");
        for _ in 0..2 {
            signal_if_there(&self.id().to_string(), "INT");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Every live process: its pid and its `/proc/<pid>` directory.
fn processes() -> impl Iterator<Item = (u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// Pids of every process whose process group is `pgid`, read from the process table.
pub fn processes_in_group(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for (pid, dir) in processes() {
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // fields[0] is the state (field 3), fields[2] the process group (field 5).
        if fields.get(2).and_then(|group| group.parse::<u32>().ok()) == Some(pgid)
            && fields[0] != "Z"
        {
            pids.push(pid);
        }
    }
    pids
}

/// Processes other than this test whose environment or command line mentions `needle`, as
/// `pid: command line`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (pid, dir) in processes() {
        if pid == std::process::id() {
            continue;
        }
        let read = |file: &str| std::fs::read(dir.join(file)).unwrap_or_default();
        let cmdline = read("cmdline");
        let mentions = |bytes: &[u8]| {
            bytes
                .split(|b| *b == 0)
                .any(|part| String::from_utf8_lossy(part).contains(needle))
        };
        if mentions(&cmdline) || mentions(&read("environ")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// The command names (`/proc/<pid>/comm`) of the running processes of group `pgid`.
pub fn commands_in_group(pgid: u32) -> Vec<String> {
    processes_in_group(pgid)
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .map(|comm| comm.trim_end().to_owned())
        .collect()
}

/// Kills the process group it names when the test fails while holding it, so that a failed
/// test leaves no long build running behind it. (A passing test ends its groups itself; the
/// guard never signals a group it cannot know is still the test's.)
pub struct KillGroupOnPanic(pub u32);

impl Drop for KillGroupOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            signal_if_there(&format!("-{}", self.0), "KILL");
        }
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, signal: &str) {
    require_tool("kill");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Sends a signal to a process (`PID`) or a process group (`-PGID`), for cleaning up: one that
/// has already gone is fine.
fn signal_if_there(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .stderr(Stdio::null())
        .status();
}
