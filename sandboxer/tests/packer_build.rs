//! End-to-end tests: the real `sandboxer` binary running the real `packer` (and, for the bundled
//! OVA example, `qemu-img`).
//!
//! Each test gets its own state directory (`SANDBOXER_HOME`), working directory, config directory
//! (`XDG_CONFIG_HOME`) and `HOME`, so neither the user's configuration nor another test can leak
//! in. Templates come from `tests/fixtures/templates/` at the workspace root and are copied into
//! the test's working directory first: Packer runs in the template's directory, and the
//! repository must stay untouched.
//!
//! A test that needs a tool fails, naming the tool, when it is missing; nothing is skipped.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

const SANDBOXER: &str = env!("CARGO_BIN_EXE_sandboxer");

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Fails the test, naming the tool and how to get it, unless `name` is an executable on `PATH`.
fn require_tool(name: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name)));
    let hint = match name {
        "packer" => " (Debian: apt-get install packer)",
        "qemu-img" => " (Debian: apt-get install qemu-utils)",
        _ => "",
    };
    assert!(
        found,
        "this test needs `{name}`, which is not on PATH{hint}; install it, the test does not skip"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The Packer template fixtures, at the workspace root.
fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/templates")
}

/// One isolated sandboxer installation: a state dir, a cwd, a config dir and a home.
struct Sandboxer {
    _temp: tempfile::TempDir,
    /// The temporary root, canonical (so paths sandboxer prints compare equal to ours).
    root: PathBuf,
    /// `SANDBOXER_HOME`.
    home: PathBuf,
    /// The directory sandboxer runs in.
    cwd: PathBuf,
    /// Extra environment for every run.
    env: Vec<(String, String)>,
}

impl Sandboxer {
    fn new() -> Self {
        let temp = tempfile::Builder::new()
            .prefix("sandboxer-it-")
            .tempdir()
            .expect("creating a temporary directory");
        let root = temp.path().canonicalize().expect("canonical temp dir");
        let cwd = root.join("cwd");
        for dir in [&cwd, &root.join("config"), &root.join("user-home")] {
            std::fs::create_dir_all(dir).expect("creating test directories");
        }
        Sandboxer {
            _temp: temp,
            home: root.join("state"),
            cwd,
            root,
            env: Vec::new(),
        }
    }

    /// Points `SANDBOXER_HOME` somewhere else.
    fn home(mut self, home: PathBuf) -> Self {
        self.home = home;
        self
    }

    /// Adds an environment variable to every later run.
    fn env(mut self, name: &str, value: impl AsRef<Path>) -> Self {
        let value = value.as_ref().to_str().expect("UTF-8 path").to_owned();
        self.env.push((name.to_owned(), value));
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SANDBOXER);
        command
            .args(args)
            .current_dir(&self.cwd)
            .env("SANDBOXER_HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("HOME", self.root.join("user-home"))
            .env_remove("SANDBOXER_PROFILES")
            .env_remove("SANDBOXER_PACKER")
            .env_remove("XDG_STATE_HOME")
            .env_remove("PACKER_LOG")
            .env_remove("PACKER_LOG_PATH")
            .env_remove("PACKER_CONFIG")
            .env_remove("PACKER_CACHE_DIR")
            // sandboxer must turn Packer's version check off itself.
            .env_remove("CHECKPOINT_DISABLE")
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Runs sandboxer to completion.
    fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .output()
            .unwrap_or_else(|err| panic!("running {SANDBOXER}: {err}"));
        Run::new(args, output)
    }

    /// Starts sandboxer and returns while it runs, its stderr readable line by line.
    fn spawn(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {SANDBOXER}: {err}"));
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        Running {
            args: args.join(" "),
            child,
            stderr,
            seen: String::new(),
        }
    }

    /// Copies `tests/fixtures/templates/NAME` into `cwd/templates/NAME`; returns that path
    /// relative to the cwd, as a user would type it.
    fn fixture(&self, name: &str) -> String {
        let from = fixtures_dir().join(name);
        assert!(from.is_dir(), "no fixture directory {}", from.display());
        copy_dir(&from, &self.cwd.join("templates").join(name));
        format!("templates/{name}")
    }

    /// `create --profile vm-packer-build --json -q` with `inputs`, expecting success.
    fn create_json(&self, inputs: &[&str]) -> Value {
        let mut args = vec![
            "create",
            "--profile",
            "profile.vm-packer-build",
            "--json",
            "-q",
        ];
        for input in inputs {
            args.extend(["--input", input]);
        }
        self.run(&args).success().json()
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.home.join("sandboxes")
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes_dir().join(id)
    }

    /// Entries of `$SANDBOXER_HOME/sandboxes`, hidden ones included.
    fn sandbox_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.sandboxes_dir()) {
            Ok(entries) => entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => panic!("reading {}: {err}", self.sandboxes_dir().display()),
        }
    }

    /// The only record `list --json` shows.
    fn only_record(&self) -> Value {
        let list = self.run(&["list", "--json"]).success().json();
        let records = list.as_array().expect("list --json prints an array");
        assert_eq!(records.len(), 1, "expected exactly one sandbox: {list:#}");
        records[0].clone()
    }

    /// `record.json` as stored.
    fn stored_record(&self, id: &str) -> Value {
        let path = self.sandbox_dir(id).join("record.json");
        let text = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        serde_json::from_slice(&text).expect("record.json is JSON")
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

/// A sandboxer still running.
struct Running {
    args: String,
    child: std::process::Child,
    stderr: BufReader<std::process::ChildStderr>,
    /// Stderr read so far.
    seen: String,
}

impl Running {
    /// Reads stderr until a line contains `needle`; fails if sandboxer ends first.
    fn wait_for(&mut self, needle: &str) {
        loop {
            let mut line = String::new();
            if self.stderr.read_line(&mut line).expect("reading stderr") == 0 {
                let _ = self.child.kill();
                panic!(
                    "`sandboxer {}` ended before printing {needle:?}:\n{}",
                    self.args, self.seen
                );
            }
            self.seen.push_str(&line);
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Sends SIGINT to sandboxer (and nothing else).
    fn interrupt(&self) {
        require_tool("kill");
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -INT {} failed", self.child.id());
    }

    /// Waits for sandboxer to exit.
    fn finish(mut self) -> Run {
        self.stderr
            .read_to_string(&mut self.seen)
            .expect("reading stderr");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut stdout)
            .expect("reading stdout");
        let status = self.child.wait().expect("waiting for sandboxer");
        Run {
            args: self.args,
            code: status.code(),
            stdout,
            stderr: self.seen,
        }
    }
}

/// A finished run.
struct Run {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(args: &[&str], output: Output) -> Self {
        Run {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    fn describe(&self) -> String {
        format!(
            "`sandboxer {}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    fn code(self, expected: i32) -> Self {
        assert_eq!(self.code, Some(expected), "{}", self.describe());
        self
    }

    fn success(self) -> Self {
        self.code(0)
    }

    /// Stdout as exactly one JSON value.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!("stdout is not one JSON value ({err})\n{}", self.describe())
        })
    }

    /// The `error: ...` message sandboxer printed on stderr (after any progress), to the end.
    fn error_message(&self) -> &str {
        let at = if self.stderr.starts_with("error: ") {
            0
        } else {
            self.stderr
                .rfind("\nerror: ")
                .map(|at| at + 1)
                .unwrap_or_else(|| panic!("no `error:` line on stderr\n{}", self.describe()))
        };
        &self.stderr[at..]
    }

    fn assert_stderr_contains(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
    }
}

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    format!("{:x}", Sha256::digest(&bytes))
}

fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {value:#}"))
}

/// The record's only artifact: (path, bytes, sha256).
fn only_artifact(record: &Value) -> (PathBuf, u64, String) {
    let artifacts = record["artifacts"].as_array().expect("artifacts array");
    assert_eq!(artifacts.len(), 1, "expected one artifact: {record:#}");
    let artifact = &artifacts[0];
    (
        PathBuf::from(str_field(artifact, "path")),
        artifact["bytes"].as_u64().expect("bytes"),
        str_field(artifact, "sha256").to_owned(),
    )
}

/// Checks that the artifact entry describes the file on disk exactly.
fn assert_artifact_matches_file(record: &Value, file_name: &str) -> PathBuf {
    let (path, bytes, sha256) = only_artifact(record);
    assert!(
        path.is_absolute(),
        "artifact path is not absolute: {}",
        path.display()
    );
    assert_eq!(
        path.file_name().and_then(|name| name.to_str()),
        Some(file_name),
        "{record:#}"
    );
    let meta = std::fs::metadata(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(bytes > 0, "empty artifact: {record:#}");
    assert_eq!(bytes, meta.len(), "artifact size");
    assert_eq!(sha256, sha256_file(&path), "artifact sha256");
    path
}

/// Checks that `ova` is a ustar archive whose members are `<vm>.ovf`, `<vm>.mf`, the disk.
fn assert_is_ova(ova: &Path, vm_name: &str) {
    require_tool("tar");
    let mut header = [0_u8; 512];
    std::fs::File::open(ova)
        .and_then(|mut file| file.read_exact(&mut header))
        .unwrap_or_else(|err| panic!("reading the tar header of {}: {err}", ova.display()));
    assert_eq!(
        &header[257..265],
        b"ustar\x0000",
        "{} is not a POSIX ustar archive",
        ova.display()
    );
    let output = Command::new("tar")
        .arg("-tf")
        .arg(ova)
        .output()
        .expect("running tar");
    assert!(output.status.success(), "tar -tf {} failed", ova.display());
    let members: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        members,
        [
            format!("{vm_name}.ovf"),
            format!("{vm_name}.mf"),
            format!("{vm_name}-disk1.vmdk"),
        ],
        "members of {}",
        ova.display()
    );
}

/// Every regular file below `dir` (recursively) whose contents contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let path = entry.path();
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// Asserts that none of `secrets` appears in any file of the state dir nor in any output.
fn assert_no_secret(sandboxer: &Sandboxer, secrets: &[&str], runs: &[&Run]) {
    for secret in secrets {
        let leaks = files_containing(&sandboxer.home, secret);
        assert!(leaks.is_empty(), "secret {secret:?} written to {leaks:?}");
        for run in runs {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "secret {secret:?} printed\n{}",
                run.describe()
            );
        }
    }
}

/// Processes whose environment or command line mentions `needle` (pid and command line).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let own = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").expect("reading /proc") {
        let Ok(entry) = entry else { continue };
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == own {
            continue;
        }
        let read = |file: &str| std::fs::read(entry.path().join(file)).unwrap_or_default();
        let cmdline = read("cmdline");
        let environ = read("environ");
        let mentions = |bytes: &[u8]| {
            bytes
                .split(|b| *b == 0)
                .any(|part| String::from_utf8_lossy(part).contains(needle))
        };
        if mentions(&cmdline) || mentions(&environ) {
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// Asserts that the sandbox's Packer TMPDIR is empty or gone and nothing of its build still runs.
fn assert_no_leftovers(sandboxer: &Sandboxer, id: &str) {
    let work = sandboxer.sandbox_dir(id).join("work");
    if work.exists() {
        let left: Vec<_> = std::fs::read_dir(&work)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(
            left.is_empty(),
            "Packer's TMPDIR {} still holds {left:?}",
            work.display()
        );
    }
    let running = processes_mentioning(id);
    assert!(
        running.is_empty(),
        "processes of sandbox {id} still run: {running:#?}"
    );
}

/// Writes a profile file into `cwd/my-profiles/` and returns that directory.
fn write_profile(sandboxer: &Sandboxer, file: &str, text: &str) -> String {
    let dir = sandboxer.cwd.join("my-profiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
    dir.to_str().unwrap().to_owned()
}

fn require_packer_and_qemu() {
    require_tool("packer");
    require_tool("qemu-img");
}

// ---------------------------------------------------------------------------------------------
// 1. The bundled example
// ---------------------------------------------------------------------------------------------

#[test]
fn bundled_example_builds_an_ova_and_records_it() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    let run = sandboxer
        .run(&["create", "--profile", "profile.vm-packer-build", "--json"])
        .success();
    let record = run.json();

    assert!(record.is_object(), "one JSON record: {record:#}");
    assert_eq!(record["state"], "ready", "{record:#}");
    assert_eq!(record["mode"], "build");
    assert_eq!(record["profile"], "profile.vm-packer-build");
    assert_eq!(record["extension"], "ext.vm-packer");
    assert_eq!(record["inputs"]["vm_name"], "example-vm");
    assert!(record["owner"].is_null(), "no owner once done: {record:#}");
    let id = str_field(&record, "id");
    assert!(id.starts_with("sb-"), "{id}");

    let ova = assert_artifact_matches_file(&record, "example-vm.ova");
    assert!(
        ova.starts_with(sandboxer.sandbox_dir(id).join("output")),
        "the OVA is in the sandbox's output dir: {}",
        ova.display()
    );
    assert_is_ova(&ova, "example-vm");

    // The log is where the record says, and holds Packer's machine-readable output.
    let log = PathBuf::from(str_field(&record, "log"));
    assert_eq!(log, sandboxer.sandbox_dir(id).join("provision.log"));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains(",artifact,"), "{log_text}");

    // The progress went to stderr, the record only to stdout.
    run.assert_stderr_contains(&format!("sandbox {id} is ready"));

    // Every view of the record agrees.
    assert_eq!(sandboxer.only_record(), record, "list --json");
    let shown = sandboxer.run(&["show", id, "--json"]).success().json();
    assert_eq!(shown, record, "show --json");
    assert_eq!(sandboxer.stored_record(id), record, "record.json");
    let by_prefix = sandboxer
        .run(&["show", &id[..id.len() - 2], "--json"])
        .success()
        .json();
    assert_eq!(by_prefix, record, "show by unique prefix");
}

#[test]
fn vm_name_input_names_the_ova() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    let record = sandboxer.create_json(&["vm_name=other"]);
    assert_eq!(record["inputs"]["vm_name"], "other");
    let ova = assert_artifact_matches_file(&record, "other.ova");
    assert_is_ova(&ova, "other");
}

#[test]
fn without_json_stdout_is_just_the_id() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    let run = sandboxer
        .run(&["create", "--profile", "vm-packer-build"])
        .success();
    let id = run
        .stdout
        .strip_suffix('\n')
        .expect("a newline-terminated line");
    assert!(
        id.starts_with("sb-") && !id.contains(char::is_whitespace),
        "stdout is not just an id: {:?}",
        run.stdout
    );
    // The progress is on stderr.
    run.assert_stderr_contains("packer build");
    run.assert_stderr_contains(&format!("sandbox {id} is ready"));
    let record = sandboxer.run(&["show", id, "--json"]).success().json();
    assert_eq!(record["state"], "ready");
    // The human `show` and `list` name it too.
    let show = sandboxer.run(&["show", id]).success();
    assert!(
        show.stdout
            .lines()
            .any(|line| line.starts_with("state:") && line.trim_end().ends_with(" ready")),
        "{}",
        show.describe()
    );
    assert!(
        show.stdout.contains("example-vm.ova"),
        "{}",
        show.describe()
    );
    let list = sandboxer.run(&["list"]).success();
    assert!(list.stdout.contains(id), "{}", list.describe());
}

// ---------------------------------------------------------------------------------------------
// 2. Teardown
// ---------------------------------------------------------------------------------------------

#[test]
fn teardown_keeps_the_ova_and_is_idempotent() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    let record = sandboxer.create_json(&[]);
    let id = str_field(&record, "id").to_owned();
    let (built_path, built_bytes, built_sha) = only_artifact(&record);

    let run = sandboxer.run(&["teardown", &id, "--json"]).success();
    let torn = run.json();
    run.assert_stderr_contains("torn down");
    assert_eq!(torn["state"], "torn-down", "{torn:#}");

    let kept = sandboxer
        .home
        .join("artifacts")
        .join(&id)
        .join("example-vm.ova");
    let (path, bytes, sha) = only_artifact(&torn);
    assert_eq!(path, kept, "the record points at the kept OVA");
    assert!(kept.is_file(), "{} is missing", kept.display());
    assert!(!built_path.exists(), "the OVA was moved, not copied");
    assert_eq!((bytes, sha.as_str()), (built_bytes, built_sha.as_str()));
    assert_eq!(
        sha256_file(&kept),
        built_sha,
        "the kept OVA is the built one"
    );
    assert_is_ova(&kept, "example-vm");

    for dir in ["work", "output"] {
        let path = sandboxer.sandbox_dir(&id).join(dir);
        assert!(!path.exists(), "{} survived teardown", path.display());
    }

    // Again: nothing to do, not an error.
    let again = sandboxer.run(&["teardown", &id]).success();
    again.assert_stderr_contains("already");
    assert_eq!(sandboxer.stored_record(&id)["state"], "torn-down");

    // The record stays readable.
    let shown = sandboxer.run(&["show", &id, "--json"]).success().json();
    assert_eq!(shown, torn);
    assert_eq!(sandboxer.only_record(), torn);
    sandboxer.run(&["show", &id]).success();
}

#[test]
fn teardown_keeps_the_ova_when_the_state_dir_is_reached_through_a_symlink() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    let real = sandboxer.root.join("real-state");
    std::fs::create_dir_all(&real).unwrap();
    let link = sandboxer.root.join("state-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // SANDBOXER_HOME names the symlink, as a home directory on a symlinked disk would.
    let sandboxer = sandboxer.home(link);

    let record = sandboxer.create_json(&[]);
    let id = str_field(&record, "id").to_owned();
    let (_, _, built_sha) = only_artifact(&record);

    let torn = sandboxer.run(&["teardown", &id, "--json"]).success().json();
    let (path, _, _) = only_artifact(&torn);
    assert!(
        path.is_file(),
        "teardown says it kept {}, but that file is gone",
        path.display()
    );
    assert_eq!(sha256_file(&path), built_sha);
    assert!(
        path.starts_with(real.join("artifacts").join(&id)),
        "kept under artifacts/<id>: {}",
        path.display()
    );
}

// ---------------------------------------------------------------------------------------------
// 3, 4. Failing builds
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_build_quotes_packer_and_records_the_failure() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("fail");
    let template = format!("packer_template={template}/fail.pkr.hcl");
    let args = [
        "create",
        "--profile",
        "vm-packer-build",
        "--input",
        &template,
    ];

    let run = sandboxer.run(&args).code(1);
    assert!(
        run.stdout.is_empty(),
        "nothing on stdout without --json\n{}",
        run.describe()
    );
    let record = sandboxer.only_record();
    let id = str_field(&record, "id").to_owned();
    let log = str_field(&record, "log").to_owned();
    let message = run.error_message();
    assert!(
        message.contains("Script exited with non-zero exit status: 1"),
        "Packer's error line is quoted: {message}"
    );
    assert!(
        message.contains(&format!("sandbox {id} failed")),
        "{message}"
    );
    assert!(message.contains(&log), "the log path is named: {message}");
    // The provisioner's own explanation reached the person watching.
    run.assert_stderr_contains("fixture: disk quota exceeded while writing the image");

    assert_eq!(record["state"], "failed", "{record:#}");
    let reason = record["state_reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "a failed record says why: {record:#}");
    assert!(record["artifacts"].as_array().unwrap().is_empty());
    assert!(record["owner"].is_null(), "{record:#}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("fixture: disk quota exceeded"),
        "{log_text}"
    );
    assert_no_leftovers(&sandboxer, &id);
    // The default on_failure is cleanup: the working files go, the log stays.
    for dir in ["work", "output"] {
        let path = sandboxer.sandbox_dir(&id).join(dir);
        assert!(!path.exists(), "{} survived a failed build", path.display());
    }

    // With --json (and --quiet), the error object is the only thing on stdout.
    let json_args = [&args[..], &["--json", "--quiet"]].concat();
    let run = sandboxer.run(&json_args).code(1);
    let error = run.json();
    let object = error.as_object().expect("an error object");
    assert_eq!(
        object.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["error", "message", "exit_code"]),
        "{error:#}"
    );
    assert_eq!(error["error"], "failed");
    assert_eq!(error["exit_code"], 1);
    let message = str_field(&error, "message");
    assert!(
        message.contains("Script exited with non-zero exit status: 1"),
        "{message}"
    );
    assert!(message.contains("provision.log"), "{message}");
    assert!(
        run.stderr.contains(message),
        "the same message on stderr\n{}",
        run.describe()
    );

    // A failed sandbox can be torn down like any other.
    let torn = sandboxer.run(&["teardown", &id, "--json"]).success().json();
    assert_eq!(torn["state"], "torn-down");
}

#[test]
fn on_failure_keep_keeps_what_the_failed_build_wrote() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("fail");
    let template = format!("packer_template={template}/fail.pkr.hcl");
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-q",
            "--on-failure",
            "keep",
            "-i",
            &template,
            "-i",
            "vm_name=kept",
        ])
        .code(1);
    let record = sandboxer.only_record();
    assert_eq!(record["state"], "failed", "{record:#}\n{}", run.describe());
    let id = str_field(&record, "id");
    let partial = sandboxer.sandbox_dir(id).join("output/kept.partial");
    assert_eq!(std::fs::read_to_string(&partial).unwrap(), "partial\n");
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    assert!(log.contains("-on-error=abort"), "{log}");
    // Packer's processes are gone all the same.
    let running = processes_mentioning(id);
    assert!(
        running.is_empty(),
        "processes of sandbox {id} still run: {running:#?}"
    );
    // A teardown removes what was kept.
    sandboxer.run(&["teardown", id]).success();
    assert!(!partial.exists());
}

#[test]
fn failed_record_reason_quotes_packer() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("fail");
    let template = format!("packer_template={template}/fail.pkr.hcl");
    sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-q",
            "-i",
            &template,
        ])
        .code(1);
    let record = sandboxer.only_record();
    let reason = str_field(&record, "state_reason");
    assert!(
        reason.contains("Script exited with non-zero exit status: 1"),
        "`show` should say why the build failed, not only that it did: {reason:?}"
    );
}

#[test]
fn syntax_error_keeps_packers_file_and_line() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("syntax-error");
    let template = format!("packer_template={template}/broken.pkr.hcl");
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-q",
            "--input",
            &template,
        ])
        .code(1);
    let message = run.error_message();
    assert!(
        message.contains("broken.pkr.hcl line 7"),
        "file and line: {message}"
    );
    assert!(
        message.contains("this line is not valid hcl"),
        "the offending line: {message}"
    );
    assert!(message.contains("Invalid block definition"), "{message}");
    assert_eq!(sandboxer.only_record()["state"], "failed");
}

// ---------------------------------------------------------------------------------------------
// 5. Sensitive values
// ---------------------------------------------------------------------------------------------

/// Runs every read-only view of the state dir, so that the secret checks cover them all.
fn all_views(sandboxer: &Sandboxer, id: &str) -> Vec<Run> {
    vec![
        sandboxer.run(&["show", id, "--json"]).success(),
        sandboxer.run(&["show", id]).success(),
        sandboxer.run(&["list", "--json"]).success(),
        sandboxer.run(&["list"]).success(),
    ]
}

#[test]
fn sensitive_template_variable_never_leaves_packer() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("sensitive");
    let template = format!("packer_template={template}/sensitive.pkr.hcl");
    // Two parts around a comma, which Packer escapes in machine-readable output.
    let secrets = ["s3cr3t-value", "second-half"];
    let token = format!("var.token={},{}", secrets[0], secrets[1]);
    let create = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-i",
            &template,
            "-i",
            "vm_name=sec",
            "-i",
            &token,
        ])
        .success();
    let id = create.stdout.trim().to_owned();

    // The build did echo it (so the redaction was put to work), and the redaction shows.
    create.assert_stderr_contains("token=<redacted>");
    create.assert_stderr_contains("stderr-token=<redacted>");
    let record = sandboxer.stored_record(&id);
    assert_eq!(record["inputs"]["var.token"], "<redacted>", "{record:#}");
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    assert!(log.contains("-var token=<redacted>"), "{log}");
    assert!(log.contains("token=<redacted>\n"), "{log}");

    let views = all_views(&sandboxer, &id);
    let mut runs: Vec<&Run> = views.iter().collect();
    runs.push(&create);
    assert_no_secret(&sandboxer, &secrets, &runs);
}

#[test]
fn profile_sensitive_inputs_hide_a_variable_the_template_does_not_mark() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("plain-token");
    let profiles = write_profile(
        &sandboxer,
        "plain.toml",
        &format!(
            r#"id = "profile.plain-token"
description = "token is sensitive only because this profile says so"
extension = "ext.vm-packer"
ttl = "1h"
sensitive_inputs = ["var.token"]

[inputs]
packer_template = "{template}/plain-token.pkr.hcl"
vm_name = "plain"
"var.token" = "pr0file-s3cr3t"
"#
        ),
    );
    let base = [
        "--profiles-dir",
        &profiles,
        "create",
        "--profile",
        "plain-token",
    ];

    // The profile's own value.
    let from_profile = sandboxer.run(&base).success();
    from_profile.assert_stderr_contains("token=<redacted>");
    let first = from_profile.stdout.trim().to_owned();

    // A value given on the command line.
    let cli = [&base[..], &["--input", "var.token=cl1-s3cr3t"]].concat();
    let from_cli = sandboxer.run(&cli).success();
    from_cli.assert_stderr_contains("token=<redacted>");
    let second = from_cli.stdout.trim().to_owned();

    for id in [&first, &second] {
        let record = sandboxer.stored_record(id);
        assert_eq!(record["state"], "ready");
        assert_eq!(record["inputs"]["var.token"], "<redacted>", "{record:#}");
    }
    let mut views = all_views(&sandboxer, &first);
    views.extend(all_views(&sandboxer, &second));
    views.push(
        sandboxer
            .run(&[
                "--profiles-dir",
                &profiles,
                "profiles",
                "show",
                "plain-token",
            ])
            .success(),
    );
    views.push(
        sandboxer
            .run(&[
                "--profiles-dir",
                &profiles,
                "profiles",
                "show",
                "plain-token",
                "--json",
            ])
            .success(),
    );
    let mut runs: Vec<&Run> = views.iter().collect();
    runs.extend([&from_profile, &from_cli]);
    assert_no_secret(&sandboxer, &["pr0file-s3cr3t", "cl1-s3cr3t"], &runs);
}

// ---------------------------------------------------------------------------------------------
// 6. Undeclared variables
// ---------------------------------------------------------------------------------------------

#[test]
fn undeclared_variable_is_refused_before_packer_runs() {
    let sandboxer = Sandboxer::new();
    // A stand-in Packer that leaves a mark if anyone runs it.
    let marker = sandboxer.root.join("packer-was-run");
    let fake = sandboxer.root.join("fake-packer");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sandboxer = sandboxer.env("SANDBOXER_PACKER", &fake);
    let template = sandboxer.fixture("sensitive");
    let template = format!("packer_template={template}/sensitive.pkr.hcl");

    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-i",
            &template,
            "-i",
            "var.tokn=x",
        ])
        .code(2);
    let message = run.error_message();
    assert!(message.contains("declares no variable `tokn`"), "{message}");
    assert!(message.contains("did you mean `var.token`?"), "{message}");
    assert!(
        message.contains("(declared: output_directory, token, vm_name)"),
        "the declared variables are listed: {message}"
    );

    // Variables sandboxer sets itself are refused too, pointing at the right input.
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-i",
            &template,
            "-i",
            "var.vm_name=x",
        ])
        .code(2);
    assert!(
        run.error_message()
            .contains("use the `vm_name` input instead"),
        "{}",
        run.describe()
    );

    // Same for a legacy JSON template.
    let legacy = sandboxer.fixture("legacy");
    let legacy = format!("packer_template={legacy}/legacy.json");
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--json",
            "-i",
            &legacy,
            "-i",
            "var.nope=1",
        ])
        .code(2);
    let error = run.json();
    assert_eq!(error["error"], "usage", "{error:#}");
    assert_eq!(error["exit_code"], 2);
    assert!(str_field(&error, "message").contains("declared: output_directory, token, vm_name"));

    assert!(
        !marker.exists(),
        "packer ran although the input was refused"
    );
    assert!(
        sandboxer.sandbox_entries().is_empty(),
        "no sandbox may be created: {:?}",
        sandboxer.sandbox_entries()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Other template forms
// ---------------------------------------------------------------------------------------------

#[test]
fn legacy_json_template_builds_and_hides_its_sensitive_variables() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("legacy");
    let template = format!("packer_template={template}/legacy.json");
    let create = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--json",
            "-i",
            &template,
            "-i",
            "vm_name=old-style",
            "-i",
            "var.token=l3gacy-s3cr3t",
        ])
        .success();
    let record = create.json();
    assert_eq!(record["state"], "ready", "{record:#}");
    let ova = assert_artifact_matches_file(&record, "old-style.ova");
    assert_eq!(std::fs::read_to_string(ova).unwrap(), "legacy-image\n");
    // `sensitive-variables` marks it, as `sensitive = true` does in HCL2.
    assert_eq!(record["inputs"]["var.token"], "<redacted>");
    create.assert_stderr_contains("token=<redacted>");
    let id = str_field(&record, "id");
    let views = all_views(&sandboxer, id);
    let mut runs: Vec<&Run> = views.iter().collect();
    runs.push(&create);
    assert_no_secret(&sandboxer, &["l3gacy-s3cr3t"], &runs);
}

#[test]
fn directory_template_builds() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("dir-template");
    let record =
        sandboxer.create_json(&[&format!("packer_template={template}"), "vm_name=from-dir"]);
    assert_eq!(record["state"], "ready");
    let ova = assert_artifact_matches_file(&record, "from-dir.ova");
    assert_eq!(std::fs::read_to_string(ova).unwrap(), "dir-image\n");
    // A trailing slash names the same directory.
    let record = sandboxer.create_json(&[&format!("packer_template={template}/"), "vm_name=slash"]);
    assert_artifact_matches_file(&record, "slash.ova");
}

// ---------------------------------------------------------------------------------------------
// 8. Usage errors
// ---------------------------------------------------------------------------------------------

#[test]
fn attach_mode_is_not_available_yet() {
    let sandboxer = Sandboxer::new();
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--input",
            "mode=attach",
        ])
        .code(2);
    assert!(
        run.error_message().contains("not available yet"),
        "{}",
        run.describe()
    );
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--json",
            "--input",
            "mode=attach",
        ])
        .code(2);
    assert_eq!(run.json()["error"], "usage");
    assert!(sandboxer.sandbox_entries().is_empty());
}

#[test]
fn unknown_input_suggests_the_nearest_name() {
    let sandboxer = Sandboxer::new();
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--input",
            "vm_nmae=x",
        ])
        .code(2);
    let message = run.error_message();
    assert!(message.contains("unknown input `vm_nmae`"), "{message}");
    assert!(message.contains("did you mean `vm_name`?"), "{message}");
    assert!(sandboxer.sandbox_entries().is_empty());
}

#[test]
fn missing_packer_is_a_clear_usage_error() {
    let sandboxer = Sandboxer::new().env("SANDBOXER_PACKER", "/nonexistent/packer");
    let run = sandboxer
        .run(&["create", "--profile", "vm-packer-build"])
        .code(2);
    let message = run.error_message();
    assert!(
        message.contains("SANDBOXER_PACKER=/nonexistent/packer"),
        "{message}"
    );
    assert!(message.contains("not an executable"), "{message}");
    assert!(sandboxer.sandbox_entries().is_empty());

    // No SANDBOXER_PACKER and no packer on PATH.
    let empty_bin = sandboxer.root.join("empty-bin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    let without_packer = Sandboxer::new().env("PATH", &empty_bin);
    let run = without_packer
        .run(&["create", "--profile", "vm-packer-build"])
        .code(2);
    let message = run.error_message();
    assert!(message.contains("`packer` not found on PATH"), "{message}");
    assert!(
        message.contains("SANDBOXER_PACKER"),
        "says how to point at one: {message}"
    );
    assert!(without_packer.sandbox_entries().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 9. Paths and working directories
// ---------------------------------------------------------------------------------------------

#[test]
fn relative_template_resolves_from_cwd_and_builds_in_its_own_directory() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    // cwd/templates/relative/{relative.pkr.hcl,payload.txt}; sandboxer runs in cwd, so the
    // template's `cp payload.txt ...` works only if Packer runs in the template's directory.
    let template = sandboxer.fixture("relative");
    let payload = sandboxer.cwd.join(&template).join("payload.txt");
    assert!(!sandboxer.cwd.join("payload.txt").exists());

    let record = sandboxer.create_json(&[
        &format!("packer_template={template}/relative.pkr.hcl"),
        "vm_name=rel",
    ]);
    let ova = assert_artifact_matches_file(&record, "rel.ova");
    assert_eq!(sha256_file(&ova), sha256_file(&payload));
    // The record keeps the input as given.
    assert_eq!(
        record["inputs"]["packer_template"],
        format!("{template}/relative.pkr.hcl")
    );

    // The same relative path from another directory does not exist there: a usage error that
    // says where relative paths are resolved from.
    let elsewhere = sandboxer.cwd.join("templates");
    let run = sandboxer
        .command(&[
            "create",
            "--profile",
            "vm-packer-build",
            "-i",
            &format!("packer_template={template}/relative.pkr.hcl"),
        ])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let run = Run::new(&["create (from cwd/templates)"], run).code(2);
    let message = run.error_message();
    assert!(message.contains("cannot read"), "{message}");
    assert!(
        message.contains(elsewhere.to_str().unwrap()),
        "names the directory: {message}"
    );

    // An absolute path works from anywhere.
    let absolute = sandboxer.cwd.join(&template).join("relative.pkr.hcl");
    let run = sandboxer
        .command(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--json",
            "-q",
            "-i",
            &format!("packer_template={}", absolute.display()),
            "-i",
            "vm_name=abs",
        ])
        .current_dir(&sandboxer.root)
        .output()
        .unwrap();
    let record = Run::new(&["create (absolute template)"], run)
        .success()
        .json();
    let ova = assert_artifact_matches_file(&record, "abs.ova");
    assert_eq!(sha256_file(&ova), sha256_file(&payload));
}

#[test]
fn project_input_reaches_only_templates_that_declare_it() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("project");
    let profiles = write_profile(
        &sandboxer,
        "project.toml",
        &format!(
            r#"id = "profile.project-build"
description = "vm_name derived from the project"
extension = "ext.vm-packer"
ttl = "2h"

[inputs]
packer_template = "{template}/project.pkr.hcl"
vm_name = "build-{{project}}"
"#
        ),
    );
    let record = sandboxer
        .run(&[
            "--profiles-dir",
            &profiles,
            "create",
            "--profile",
            "project-build",
            "--json",
            "-q",
            "-i",
            "project=web",
        ])
        .success()
        .json();
    assert_eq!(record["inputs"]["vm_name"], "build-web", "{record:#}");
    assert_eq!(record["inputs"]["project"], "web");
    let ova = assert_artifact_matches_file(&record, "build-web.ova");
    assert_eq!(std::fs::read_to_string(ova).unwrap(), "project=web\n");

    // The bundled example declares no `project`: it is not passed, and the build succeeds.
    let record = sandboxer.create_json(&["project=web"]);
    assert_eq!(record["state"], "ready");
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    assert!(!log.contains("-var project="), "{log}");
}

// ---------------------------------------------------------------------------------------------
// 10. Leftovers and cancellation
// ---------------------------------------------------------------------------------------------

#[test]
fn successful_builds_leave_no_temp_files_or_processes() {
    require_packer_and_qemu();
    let sandboxer = Sandboxer::new();
    // The bundled example (a post-processor script) ...
    let record = sandboxer.create_json(&[]);
    assert_no_leftovers(&sandboxer, str_field(&record, "id"));
    // ... and a template whose inline provisioner Packer writes to a temp script.
    let template = sandboxer.fixture("sensitive");
    let record = sandboxer.create_json(&[
        &format!("packer_template={template}/sensitive.pkr.hcl"),
        "var.token=t",
    ]);
    assert_no_leftovers(&sandboxer, str_field(&record, "id"));
    // Nothing was written next to the template.
    let mut beside: Vec<String> = std::fs::read_dir(sandboxer.cwd.join(&template))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["sensitive.pkr.hcl"]);
}

/// Starts a build of the `gate` fixture and returns once its provisioner runs, with the path
/// that opens the gate.
fn start_gated_build(sandboxer: &Sandboxer, extra: &[&str]) -> (Running, PathBuf, String) {
    let template = sandboxer.fixture("gate");
    let gate = sandboxer.root.join("gate-open");
    let mut args: Vec<String> = [
        "create",
        "--profile",
        "vm-packer-build",
        "--json",
        "-i",
        &format!("packer_template={template}/gate.pkr.hcl"),
        "-i",
        &format!("var.gate={}", gate.display()),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = sandboxer.spawn(&args);
    running.wait_for("build started");
    let id = str_field(&sandboxer.only_record(), "id").to_owned();
    (running, gate, id)
}

#[test]
fn sigint_cancels_the_build_and_everything_it_started() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let secret = "g4te-s3cr3t";
    let token = format!("var.token={secret}");
    let (running, _gate, id) = start_gated_build(&sandboxer, &["-i", &token]);
    let record = sandboxer.stored_record(&id);
    assert_eq!(record["state"], "provisioning", "{record:#}");
    assert!(
        record["owner"]["pgid"].is_u64(),
        "the running build's group is recorded: {record:#}"
    );

    // The gate stays shut: only the interrupt can end this build.
    running.interrupt();
    let run = running.finish().code(130);
    let error = run.json();
    assert_eq!(error["error"], "interrupted", "{error:#}");
    assert_eq!(error["exit_code"], 130);
    assert!(!run.stderr.contains("gate opened"), "{}", run.describe());
    run.assert_stderr_contains("token=<redacted>");

    let record = sandboxer.stored_record(&id);
    assert_eq!(record["state"], "cancelled", "{record:#}");
    assert!(
        str_field(&record, "state_reason").contains("SIGINT"),
        "{record:#}"
    );
    assert!(record["owner"].is_null(), "{record:#}");
    // Packer, its plugins and the provisioner's shell loop are all gone, and so are the
    // temporary scripts Packer wrote (with the token in them) into its TMPDIR.
    let running = processes_mentioning(&id);
    assert!(
        running.is_empty(),
        "processes of sandbox {id} still run: {running:#?}"
    );
    assert_no_leftovers(&sandboxer, &id);
    assert_no_secret(&sandboxer, &[secret], &[&run]);
    sandboxer.run(&["teardown", &id]).success();
}

#[test]
fn successful_build_clears_what_packer_left_in_its_tmpdir() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let (running, gate, id) = start_gated_build(&sandboxer, &["-i", "vm_name=gated"]);
    // Stand in for what Packer sometimes leaves in its TMPDIR (temp scripts, plugin sockets).
    let work = sandboxer.sandbox_dir(&id).join("work");
    std::fs::write(work.join("packer-shell-left-behind"), "echo token=secret\n").unwrap();
    std::fs::write(&gate, "").unwrap();
    let record = running.finish().success().json();
    assert_eq!(record["state"], "ready");
    assert_artifact_matches_file(&record, "gated.ova");
    assert_no_leftovers(&sandboxer, &id);
}
