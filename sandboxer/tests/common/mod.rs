//! A harness for running the real `sandboxer` binary in a throwaway state dir and cwd.

#![allow(dead_code)] // each test binary uses a different part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Fails the test, naming the tool, when it is missing: a test never skips silently.
pub fn require_tool(name: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(name).is_file());
    assert!(
        found,
        "required tool `{name}` is not on PATH; run `cargo xtask setup` (or `make check`) to install it"
    );
}

/// The workspace's `tests/fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .canonicalize()
        .unwrap()
}

/// One isolated sandboxer installation: its own state dir, config dir and working directory.
pub struct Sandboxer {
    pub state: TempDir,
    pub cwd: TempDir,
    config: TempDir,
    env: Vec<(String, String)>,
}

impl Sandboxer {
    pub fn new() -> Self {
        Sandboxer {
            state: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
            config: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: impl AsRef<Path>) -> Self {
        self.env
            .push((name.to_owned(), value.as_ref().to_str().unwrap().to_owned()));
        self
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandboxer"));
        command
            .args(args)
            .current_dir(self.cwd.path())
            .env("SANDBOXER_HOME", self.state.path())
            .env("XDG_CONFIG_HOME", self.config.path())
            .env_remove("SANDBOXER_PROFILES")
            .env_remove("SANDBOXER_PACKER")
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run::new(args, output)
    }

    /// Starts sandboxer without waiting; its output is captured for [`Sandboxer::finish`].
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Writes a profile into `./profiles/`, where sandboxer looks by default.
    pub fn write_profile(&self, file: &str, text: &str) {
        let dir = self.cwd.path().join("profiles");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    /// The record as stored on disk, without reconciling.
    pub fn stored_record(&self, id: &str) -> Value {
        let path = self
            .state
            .path()
            .join("sandboxes")
            .join(id)
            .join("record.json");
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    pub fn show(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).success().json()
    }

    /// Sandbox ids on disk, oldest first.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state.path().join("sandboxes"))
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
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
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn from_child(args: &[&str], child: Child) -> Self {
        Run::new(args, child.wait_with_output().unwrap())
    }

    fn describe(&self) -> String {
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

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", self.describe()))
    }

    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.describe()
        );
        self
    }
}

/// Pids of every process whose process group is `pgid`, read from the process table.
pub fn processes_in_group(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
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

/// Sends a signal to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}
