//! Hostile input, as a table: bad profiles, inputs, templates, records and state dirs. Each row
//! must end in a clear error (its text named in the row) with a stable exit code, within a time
//! bound (no hang), without a panic (exit 101), and without touching a bystander sandbox's
//! record, which `list` must still show.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Run, Sandboxer, require_tool};

/// No row may take longer than this: a hostile input must not hang sandboxer.
const BOUND: Duration = Duration::from_secs(30);

const BYSTANDER: &str = "sb-0000000000by1";
const BROKEN: &str = "sb-0000000000bad";

/// A valid record, as `Registry` writes them.
fn record_json(id: &str) -> String {
    format!(
        r#"{{
  "schema_version": 1,
  "id": "{id}",
  "profile": "profile.vm-packer-build",
  "profile_source": "built-in (profiles/profile.vm-packer-build.toml)",
  "extension": "ext.vm-packer",
  "mode": "build",
  "state": "ready",
  "state_reason": null,
  "created_at": "2026-01-01T00:00:00Z",
  "updated_at": "2026-01-01T00:00:00Z",
  "expires_at": "2099-01-01T00:00:00Z",
  "inputs": {{
    "mode": "build",
    "vm_name": "bystander"
  }},
  "placement": {{
    "host": "local",
    "slot": null
  }},
  "owner": null,
  "artifacts": [],
  "log": null
}}
"#
    )
}

/// What a row sets up and runs.
enum Setup {
    /// Writes `profiles/profile.hostile.toml` and runs `profiles list`.
    Profile(&'static [u8]),
    /// Runs `create` of the built-in build profile with the quick template and these extra arguments.
    Create(&'static [&'static [u8]]),
    /// Anything else: prepares the installation and returns the arguments.
    Custom(fn(&mut Sandboxer) -> Vec<OsString>),
}

struct Row {
    name: &'static str,
    setup: Setup,
    code: i32,
    /// Text the error (or, for a warning that does not fail the command, stderr) must contain.
    says: &'static str,
    /// Whether the bystander sandbox exists in this row (not where the state dir itself is broken).
    bystander: bool,
}

const fn profile(name: &'static str, text: &'static [u8], says: &'static str) -> Row {
    Row {
        name,
        setup: Setup::Profile(text),
        code: 2,
        says,
        bystander: true,
    }
}

const fn create(
    name: &'static str,
    args: &'static [&'static [u8]],
    code: i32,
    says: &'static str,
) -> Row {
    Row {
        name,
        setup: Setup::Create(args),
        code,
        says,
        bystander: true,
    }
}

const fn custom(
    name: &'static str,
    setup: fn(&mut Sandboxer) -> Vec<OsString>,
    code: i32,
    says: &'static str,
) -> Row {
    Row {
        name,
        setup: Setup::Custom(setup),
        code,
        says,
        bystander: true,
    }
}

const fn without_bystander(row: Row) -> Row {
    Row {
        bystander: false,
        ..row
    }
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Writes `bytes` as the broken sandbox's record and runs `args`.
fn broken_record(sandboxer: &Sandboxer, bytes: &[u8], command: &[&str]) -> Vec<OsString> {
    let dir = sandboxer.sandbox_dir(BROKEN);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.json"), bytes).unwrap();
    args(command)
}

fn create_with_template(template: &str) -> Vec<OsString> {
    args(&[
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        "vm_name=hostile",
        "-i",
        &format!("packer_template={template}"),
    ])
}

fn rows() -> Vec<Row> {
    vec![
        // Profiles.
        profile("truncated TOML", b"id = \"profile.hostile\"\ndescription = \"cut he", "profile.hostile.toml:2:"),
        profile("empty profile", b"", "missing field `id`"),
        profile("ttl of the wrong type", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = 12\n", "profile.hostile.toml:4:7"),
        profile("max_concurrent of the wrong type", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n[placement]\nmax_concurrent = \"four\"\n", "profile.hostile.toml:6:"),
        profile("max_concurrent beyond 64 bits", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n[placement]\nmax_concurrent = 99999999999999999999999\n", "profile.hostile.toml:6:"),
        profile("max_concurrent beyond 32 bits", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n[placement]\nmax_concurrent = 8589934592\n", "max_concurrent must be a whole number"),
        profile("ttl of a thousand years", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"52000w\"\n", "longer than 10 years"),
        profile("NUL byte in a value", b"id = \"profile.\0hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n", "profile.hostile.toml:1:"),
        profile("invalid UTF-8", b"id = \"profile.hostile\"\ndescription = \"caf\xe9\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n", "profile.hostile.toml:2:19: not UTF-8"),
        profile("path traversal in the id", b"id = \"../../etc/passwd\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n", "invalid profile id"),
        profile("path traversal in the placement host", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n[placement]\nhost = \"../../../tmp/x\"\n", "invalid placement host"),
        profile("duplicate key", b"id = \"profile.hostile\"\nid = \"profile.again\"\n", "profile.hostile.toml:2:1"),
        profile("unknown extension", b"id = \"profile.hostile\"\ndescription = \"d\"\nextension = \"ext.rm-rf\"\nttl = \"1h\"\n", "unknown extension `ext.rm-rf`"),
        custom("very long line (1 MiB key)", |sandboxer| {
            let mut text = b"id = \"profile.hostile\"\n".to_vec();
            text.extend(std::iter::repeat_n(b'k', 1 << 20));
            text.extend(b" = 1\n");
            std::fs::create_dir_all(sandboxer.cwd().join("profiles")).unwrap();
            std::fs::write(sandboxer.cwd().join("profiles/profile.hostile.toml"), text).unwrap();
            args(&["profiles", "list"])
        }, 2, "profile.hostile.toml:2:1: unknown field"),
        custom("a profile directory that is a file", |_| {
            args(&["--profiles-dir", "/etc/hostname", "profiles", "list"])
        }, 2, "profile directory /etc/hostname does not exist"),

        // Inputs.
        create("--input without =", &[b"-i", b"novalue"], 2, "expected KEY=VALUE"),
        create("--input with an empty key", &[b"-i", b"=x"], 2, "expected KEY=VALUE"),
        create("empty required input", &[b"-i", b"vm_name="], 2, "vm_name"),
        create("path traversal in vm_name", &[b"-i", b"vm_name=../../etc"], 2, "is not a valid name"),
        create("newline in vm_name", &[b"-i", b"vm_name=a\nb"], 2, "is not a valid name"),
        create("vm_name of 100,000 characters", &[b"-i", &[b'v'; 100_000]], 2, "expected KEY=VALUE"),
        create("unknown input", &[b"-i", b"colour=blue"], 2, "unknown input `colour`"),
        create("mode outside its choices", &[b"-i", b"mode=explode"], 2, "must be one of"),
        create("undeclared template variable", &[b"-i", b"var.nope=1"], 2, "declares no variable `nope`"),
        create("--input that is not UTF-8", &[b"-i", b"vm_name=\xff"], 2, "UTF-8"),
        create("zero TTL", &[b"--ttl", b"0m"], 2, "must be longer than zero"),
        create("TTL beyond 64 bits", &[b"--ttl", b"99999999999999999999999w"], 2, "number too large"),
        create("TTL with a bad unit", &[b"--ttl", b"5x"], 2, "unexpected `x`"),
        create("cancel timeout with a bad unit", &[b"--cancel-timeout", b"1y"], 2, "invalid cancel timeout"),
        custom("unknown profile with path traversal", |_| {
            args(&["create", "--profile", "../../etc/passwd", "-i", "vm_name=x"])
        }, 3, "no profile `../../etc/passwd`"),

        // Templates.
        custom("template that does not exist", |_| create_with_template("missing.pkr.hcl"), 2, "cannot read"),
        custom("template directory without templates", |sandboxer| {
            std::fs::create_dir_all(sandboxer.cwd().join("empty")).unwrap();
            create_with_template("empty")
        }, 2, "holds no *.pkr.hcl"),
        custom("path traversal to a file that is no template", |_| create_with_template("../../../../../../etc/passwd"), 2, "expected a *.pkr.hcl"),
        custom("path traversal out of the bundled examples", |_| create_with_template("builtin:examples/../../etc/passwd"), 2, "must name a bundled example"),
        custom("bundled example that does not exist", |_| create_with_template("builtin:examples/nope/nope.pkr.hcl"), 2, "no bundled files"),
        custom("template that is a FIFO", |sandboxer| {
            let fifo = sandboxer.cwd().join("fifo.pkr.hcl");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(made.success());
            create_with_template("fifo.pkr.hcl")
        }, 2, "is not a regular file"),
        custom("template that is a symlink loop", |sandboxer| {
            std::os::unix::fs::symlink("loop.pkr.hcl", sandboxer.cwd().join("loop.pkr.hcl")).unwrap();
            create_with_template("loop.pkr.hcl")
        }, 2, "cannot read"),
        custom("template that is not UTF-8", |sandboxer| {
            std::fs::write(sandboxer.cwd().join("latin1.pkr.hcl"), b"variable \"vm_name\" {\n  description = \"caf\xe9\"\n}\n").unwrap();
            create_with_template("latin1.pkr.hcl")
        }, 2, "latin1.pkr.hcl:2:"),
        custom("packer that does not exist", |sandboxer| {
            sandboxer.set_env("SANDBOXER_PACKER", "/nonexistent/packer");
            create_with_template(&sandboxer.fixture("quick"))
        }, 2, "SANDBOXER_PACKER=/nonexistent/packer is not an executable file"),
        custom("packer that is not executable", |sandboxer| {
            let packer = sandboxer.root().join("packer");
            std::fs::write(&packer, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&packer, std::fs::Permissions::from_mode(0o644)).unwrap();
            sandboxer.set_env("SANDBOXER_PACKER", &packer);
            create_with_template(&sandboxer.fixture("quick"))
        }, 2, "is not an executable file"),
        custom("packer that is a directory", |sandboxer| {
            sandboxer.set_env("SANDBOXER_PACKER", "/usr/bin");
            create_with_template(&sandboxer.fixture("quick"))
        }, 2, "is not an executable file"),
        custom("no packer on PATH", |sandboxer| {
            sandboxer.set_env("PATH", "/nonexistent");
            create_with_template(&sandboxer.fixture("quick"))
        }, 2, "`packer` not found on PATH"),

        // Records.
        custom("record truncated to zero bytes: list warns, shows the rest", |s| broken_record(s, b"", &["list"]), 0, "warning: sandbox sb-0000000000bad"),
        custom("record truncated to zero bytes: show", |s| broken_record(s, b"", &["show", BROKEN]), 1, "EOF while parsing"),
        custom("record cut in half", |s| {
            let json = record_json(BROKEN);
            let half = json.as_bytes()[..json.len() / 2].to_vec();
            broken_record(s, &half, &["show", BROKEN])
        }, 1, "EOF while parsing"),
        custom("record edited into nonsense", |s| broken_record(s, b"{\"hello\": [1, 2, 3]}", &["show", BROKEN]), 1, "missing field"),
        custom("record with a state of the wrong type", |s| {
            let json = record_json(BROKEN).replace("\"ready\"", "5");
            broken_record(s, json.as_bytes(), &["show", BROKEN])
        }, 1, "line 8 column"),
        custom("record with NUL bytes and invalid UTF-8", |s| broken_record(s, b"{\"schema_version\": 1, \"id\": \"\0\xff\"}", &["show", BROKEN]), 1, "parsing"),
        custom("record from a future schema version", |s| {
            let json = record_json(BROKEN).replace("\"schema_version\": 1", "\"schema_version\": 99");
            broken_record(s, json.as_bytes(), &["show", BROKEN])
        }, 1, "schema version 99 is newer"),
        custom("record from a future schema version: list shows the rest", |s| {
            let json = record_json(BROKEN).replace("\"schema_version\": 1", "\"schema_version\": 99");
            broken_record(s, json.as_bytes(), &["list", "--json"])
        }, 0, "schema version 99 is newer"),
        custom("record claiming another sandbox's id: teardown", |s| {
            broken_record(s, record_json(BYSTANDER).as_bytes(), &["teardown", BROKEN])
        }, 1, "names sandbox sb-0000000000by1"),
        custom("record claiming another sandbox's id: gc", |s| {
            let json = record_json(BYSTANDER).replace("2099-01-01", "2001-01-01");
            broken_record(s, json.as_bytes(), &["gc"])
        }, 0, "names sandbox sb-0000000000by1"),
        custom("record that is a directory", |s| {
            std::fs::create_dir_all(s.sandbox_dir(BROKEN).join("record.json")).unwrap();
            args(&["show", BROKEN])
        }, 1, "reading record"),
        custom("sandbox directory without a record", |s| {
            std::fs::create_dir_all(s.sandbox_dir(BROKEN)).unwrap();
            args(&["teardown", BROKEN])
        }, 1, "reading record"),
        custom("path traversal in an id", |_| args(&["show", "../../etc"]), 2, "invalid sandbox id"),
        custom("id that is not UTF-8", |_| vec!["show".into(), OsStr::from_bytes(b"\xff").into()], 2, "UTF-8"),
        custom("id of 100,000 characters", |_| args(&["teardown", &"a".repeat(100_000)]), 3, "no sandbox"),

        // State dirs.
        without_bystander(custom("state dir that is a regular file", |s| {
            let file = s.root().join("state-file");
            std::fs::write(&file, "").unwrap();
            s.set_state_dir(&file);
            args(&["list"])
        }, 1, "creating state directory")),
        without_bystander(custom("state dir on a read-only file system", |s| {
            s.set_state_dir(Path::new("/proc/sandboxer-state"));
            args(&["list"])
        }, 1, "creating state directory /proc/sandboxer-state")),
        without_bystander(custom("state dir that is a dangling symlink", |s| {
            let link = s.root().join("dangling");
            std::os::unix::fs::symlink("/nonexistent/state", &link).unwrap();
            s.set_state_dir(&link);
            args(&["list"])
        }, 1, "creating state directory")),
        without_bystander(custom("state dir writable by others", |s| {
            std::fs::set_permissions(s.state_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
            args(&["list"])
        }, 2, "writable by others")),
        without_bystander(custom("state dir owned by another user", |s| {
            std::os::unix::fs::chown(s.state_dir(), Some(65534), Some(65534)).unwrap();
            args(&["list"])
        }, 2, "belongs to another user")),
        without_bystander(custom("sandboxes/ that is a file", |s| {
            let state = s.root().join("other-state");
            std::fs::create_dir(&state).unwrap();
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::write(state.join("sandboxes"), "").unwrap();
            s.set_state_dir(&state);
            args(&["list"])
        }, 1, "sandboxes")),
        custom("state dir through a symlink: works", |s| {
            let link = s.root().join("state-link");
            std::os::unix::fs::symlink(s.state_dir(), &link).unwrap();
            s.set_state_dir(&link);
            args(&["show", BYSTANDER])
        }, 0, ""),
        without_bystander(custom("state dir that is not UTF-8", |s| {
            s.set_env("SANDBOXER_HOME", OsStr::from_bytes(b"/tmp/\xff"));
            args(&["list"])
        }, 2, "UTF-8")),
    ]
}

#[test]
fn hostile_inputs_get_clear_errors_and_stable_exit_codes() {
    require_tool("packer");
    require_tool("mkfifo");
    let rows = rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let mut failures = Vec::new();
    for row in rows {
        if let Err(failure) = check(&row) {
            failures.push(format!("{}: {failure}", row.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Packer's plugins listen on Unix sockets in its TMPDIR (the sandbox's `work/` by default), and
/// a socket path may not exceed 107 bytes: Packer crashed under a deep state dir.
#[test]
fn a_state_dir_too_deep_for_packers_sockets_still_builds() {
    require_tool("packer");
    let plain = Sandboxer::new();
    let deep = plain
        .root()
        .join("a".repeat(60))
        .join("b".repeat(60))
        .join("state");
    let sandboxer = plain.with_state_dir(deep);
    let template = sandboxer.fixture("quick");
    let run = sandboxer.run(&[
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        "vm_name=deep",
        "-i",
        &format!("packer_template={template}"),
        "--json",
    ]);
    let record = run.success().json();
    assert_eq!(record["state"], "ready");
}

fn check(row: &Row) -> Result<(), String> {
    let mut sandboxer = Sandboxer::new();
    let bystander_record = record_json(BYSTANDER);
    let bystander_path = sandboxer.sandbox_dir(BYSTANDER).join("record.json");
    std::fs::create_dir_all(bystander_path.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        sandboxer.state_dir(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(&bystander_path, &bystander_record).unwrap();
    let args: Vec<OsString> = match &row.setup {
        Setup::Profile(text) => {
            std::fs::create_dir_all(sandboxer.cwd().join("profiles")).unwrap();
            std::fs::write(sandboxer.cwd().join("profiles/profile.hostile.toml"), text).unwrap();
            args(&["profiles", "list"])
        }
        Setup::Create(extra) => {
            let mut args = create_with_template(&sandboxer.fixture("quick"));
            args.extend(extra.iter().map(|arg| OsStr::from_bytes(arg).to_owned()));
            args
        }
        Setup::Custom(setup) => setup(&mut sandboxer),
    };
    let run = run_bounded(&sandboxer, &args)?;
    if run.code == Some(101) || run.stderr.contains("panicked") {
        return Err(format!("panicked:\n{}", run.describe()));
    }
    if run.code != Some(row.code) {
        return Err(format!(
            "expected exit code {}:\n{}",
            row.code,
            run.describe()
        ));
    }
    let told = if row.code == 0 {
        run.stderr.as_str()
    } else {
        run.error_message()
    };
    if !told.contains(row.says) {
        return Err(format!(
            "expected {:?} in what it said:\n{}",
            row.says,
            run.describe()
        ));
    }
    let now = std::fs::read_to_string(&bystander_path)
        .map_err(|err| format!("the bystander's record is gone: {err}"))?;
    if now != bystander_record {
        return Err(format!(
            "the bystander's record changed:\n{now}\n{}",
            run.describe()
        ));
    }
    if row.bystander {
        let listed = run_bounded(&sandboxer, &args_of(&["list", "--json"]))?;
        if !listed.stdout.contains(BYSTANDER) {
            return Err(format!(
                "`list` no longer shows the bystander:\n{}",
                listed.describe()
            ));
        }
    }
    Ok(())
}

fn args_of(list: &[&str]) -> Vec<OsString> {
    args(list)
}

/// Runs sandboxer, killing it (and failing) if it outlives [`BOUND`].
fn run_bounded(sandboxer: &Sandboxer, args: &[OsString]) -> Result<Run, String> {
    let mut child = sandboxer
        .command(&[])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {BOUND:?}: hangs"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let shown: Vec<String> = args
        .iter()
        .map(|arg| {
            let text = arg.to_string_lossy();
            if text.len() > 200 {
                format!("{}...", &text[..200])
            } else {
                text.into_owned()
            }
        })
        .collect();
    Ok(Run {
        args: shown,
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    })
}
