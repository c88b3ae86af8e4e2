//! End-to-end tests: the real `sandboxer` binary running the real `packer` (and, for the bundled
//! OVA example, `qemu-img`).
//!
//! Each test gets its own state directory (`SANDBOXER_HOME`), working directory, config directory
//! (`XDG_CONFIG_HOME`) and `HOME` (see `common`), so neither the user's configuration nor another
//! test can leak in. Templates come from `tests/fixtures/templates/` at the workspace root and are
//! copied into the test's working directory first: Packer runs in the template's directory, and
//! the repository must stay untouched.
//!
//! A test that needs a tool fails, naming the tool, when it is missing; nothing is skipped.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    Run, Running, Sandboxer, processes_in_group, processes_mentioning, require_tool, signal,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh sandboxer, for a test that runs the real Packer.
fn with_packer() -> Sandboxer {
    require_tool("packer");
    Sandboxer::new()
}

/// A fresh sandboxer, for a test that builds the bundled example (Packer, then `qemu-img`).
fn with_packer_and_qemu() -> Sandboxer {
    require_tool("packer");
    require_tool("qemu-img");
    Sandboxer::new()
}

/// `create --profile vm-packer-build OPTIONS -i INPUT...`.
fn create_args<'a>(options: &[&'a str], inputs: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["create", "--profile", "vm-packer-build"];
    args.extend_from_slice(options);
    for input in inputs {
        args.extend(["-i", input]);
    }
    args
}

/// Runs `create --profile vm-packer-build` with `options` and `inputs`.
fn create(sandboxer: &Sandboxer, options: &[&str], inputs: &[&str]) -> Run {
    sandboxer.run(&create_args(options, inputs))
}

/// `create --profile vm-packer-build --json -q` with `inputs`, expecting success: the record.
fn create_json(sandboxer: &Sandboxer, inputs: &[&str]) -> Value {
    create(sandboxer, &["--json", "-q"], inputs)
        .success()
        .json()
}

/// Copies the template fixture `FIXTURE` into the cwd and returns the input naming its `FILE`,
/// relative to the cwd: `packer_template=templates/FIXTURE/FILE`.
fn template_input(sandboxer: &Sandboxer, fixture: &str, file: &str) -> String {
    format!("packer_template={}/{file}", sandboxer.fixture(fixture))
}

/// Copies the template fixture `FIXTURE` into the cwd and writes `profile` (TOML, in which
/// `{template}` stands for the fixture's directory) as `cwd/my-profiles/FIXTURE.toml`; returns
/// that directory, for `--profiles-dir`.
fn write_fixture_profile(sandboxer: &Sandboxer, fixture: &str, profile: &str) -> String {
    let profile = profile.replace("{template}", &sandboxer.fixture(fixture));
    sandboxer.write_profile_in("my-profiles", &format!("{fixture}.toml"), &profile)
}

/// `--profiles-dir PROFILES create --profile PROFILE MORE...`: a create from a profile of the
/// test's own.
fn create_from_args<'a>(profiles: &'a str, profile: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--profiles-dir", profiles, "create", "--profile", profile];
    args.extend_from_slice(more);
    args
}

/// A profile for the `plain-token` fixture that marks `var.token` sensitive, which the template
/// does not.
const PLAIN_TOKEN_PROFILE: &str = r#"id = "profile.plain-token"
description = "token is sensitive only because this profile says so"
extension = "ext.vm-packer"
ttl = "1h"
sensitive_inputs = ["var.token"]

[inputs]
mode = "build"
packer_template = "{template}/plain-token.pkr.hcl"
vm_name = "plain"
"var.token" = "pr0file-s3cr3t"
"#;

/// A profile for the `project` fixture that derives `vm_name` from the `project` input.
const PROJECT_PROFILE: &str = r#"id = "profile.project-build"
description = "vm_name derived from the project"
extension = "ext.vm-packer"
ttl = "2h"

[inputs]
mode = "build"
packer_template = "{template}/project.pkr.hcl"
vm_name = "build-{project}"
"#;

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    format!("{:x}", Sha256::digest(&bytes))
}

fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {value:#}"))
}

/// Checks that stdout is sandboxer's JSON error object for `kind` and `exit_code`; returns it.
fn assert_json_error(run: &Run, kind: &str, exit_code: i32) -> Value {
    let error = run.json();
    assert_eq!(error["error"], kind, "{error:#}");
    assert_eq!(error["exit_code"], exit_code, "{error:#}");
    error
}

/// Checks that nothing was allocated in the state dir, not even a half-made sandbox.
fn assert_no_sandbox(sandboxer: &Sandboxer) {
    let entries = sandboxer.sandbox_entries();
    assert!(entries.is_empty(), "no sandbox may be created: {entries:?}");
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
pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
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

/// Asserts that none of `secrets` appears in any file of the state dir, in the output of `runs`,
/// nor in anything the read-only views print: `show` of each of `ids` and, when there are ids,
/// `list` (each with and without `--json`).
pub(crate) fn assert_no_secret(
    sandboxer: &Sandboxer,
    secrets: &[&str],
    ids: &[&str],
    runs: &[&Run],
) {
    let mut views = Vec::new();
    for id in ids {
        views.push(sandboxer.run(&["show", id, "--json"]).success());
        views.push(sandboxer.run(&["show", id]).success());
        views.push(sandboxer.run(&["show", id, "--provenance"]).success());
        views.push(
            sandboxer
                .run(&["show", id, "--provenance", "--json"])
                .success(),
        );
    }
    if !ids.is_empty() {
        views.push(sandboxer.run(&["list", "--json"]).success());
        views.push(sandboxer.run(&["list"]).success());
    }
    for secret in secrets {
        let leaks = files_containing(sandboxer.state_dir(), secret);
        assert!(leaks.is_empty(), "secret {secret:?} written to {leaks:?}");
        for run in runs.iter().copied().chain(&views) {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "secret {secret:?} printed\n{}",
                run.describe()
            );
        }
    }
}

/// Asserts that no process (Packer, its plugins, a provisioner) of the sandbox still runs.
fn assert_no_processes_of(id: &str) {
    let running = processes_mentioning(id);
    assert!(
        running.is_empty(),
        "processes of sandbox {id} still run: {running:#?}"
    );
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
    assert_no_processes_of(id);
}

/// Asserts that the sandbox's working directories (`work`, `output`) are gone `after` something.
fn assert_working_dirs_gone(sandboxer: &Sandboxer, id: &str, after: &str) {
    for dir in ["work", "output"] {
        let path = sandboxer.sandbox_dir(id).join(dir);
        assert!(!path.exists(), "{} survived {after}", path.display());
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The bundled example
// ---------------------------------------------------------------------------------------------

#[test]
fn bundled_example_builds_an_ova_and_records_it() {
    let sandboxer = with_packer_and_qemu();
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
    run.stderr_contains(&format!("sandbox {id} is ready"));

    // Every view of the record agrees.
    assert_eq!(sandboxer.only_record(), record, "list --json");
    assert_eq!(sandboxer.show(id), record, "show --json");
    assert_eq!(sandboxer.stored_record(id), record, "record.json");
    let prefix = &id[..id.len() - 2];
    assert_eq!(sandboxer.show(prefix), record, "show by unique prefix");
}

#[test]
fn vm_name_input_names_the_ova() {
    let sandboxer = with_packer_and_qemu();
    let record = create_json(&sandboxer, &["vm_name=other"]);
    assert_eq!(record["inputs"]["vm_name"], "other");
    let ova = assert_artifact_matches_file(&record, "other.ova");
    assert_is_ova(&ova, "other");
}

#[test]
fn without_json_stdout_is_just_the_id() {
    let sandboxer = with_packer_and_qemu();
    let run = create(&sandboxer, &[], &[]).success();
    let id = run
        .stdout
        .strip_suffix('\n')
        .expect("a newline-terminated line")
        .to_owned();
    assert!(
        id.starts_with("sb-") && !id.contains(char::is_whitespace),
        "stdout is not just an id: {:?}",
        run.stdout
    );
    // The progress is on stderr.
    run.stderr_contains("packer build")
        .stderr_contains(&format!("sandbox {id} is ready"));
    assert_eq!(sandboxer.show(&id)["state"], "ready");
    // The human `show` and `list` name it too.
    let show = sandboxer.run(&["show", &id]).success();
    assert!(
        show.stdout
            .lines()
            .any(|line| line.starts_with("state:") && line.trim_end().ends_with(" ready")),
        "{}",
        show.describe()
    );
    show.stdout_contains("example-vm.ova");
    sandboxer.run(&["list"]).success().stdout_contains(&id);
}

// ---------------------------------------------------------------------------------------------
// 2. Teardown
// ---------------------------------------------------------------------------------------------

#[test]
fn teardown_keeps_the_ova_and_is_idempotent() {
    let sandboxer = with_packer_and_qemu();
    let record = create_json(&sandboxer, &[]);
    let id = str_field(&record, "id").to_owned();
    let (built_path, built_bytes, built_sha) = only_artifact(&record);

    let torn = sandboxer
        .run(&["teardown", &id, "--json"])
        .success()
        .stderr_contains("torn down")
        .json();
    assert_eq!(torn["state"], "torn-down", "{torn:#}");

    let kept = sandboxer
        .state_dir()
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
    assert_working_dirs_gone(&sandboxer, &id, "teardown");

    // Again: nothing to do, not an error.
    sandboxer
        .run(&["teardown", &id])
        .success()
        .stderr_contains("already");
    assert_eq!(sandboxer.stored_record(&id)["state"], "torn-down");

    // The record stays readable.
    assert_eq!(sandboxer.show(&id), torn);
    assert_eq!(sandboxer.only_record(), torn);
    sandboxer.run(&["show", &id]).success();
}

#[test]
fn teardown_keeps_the_ova_when_the_state_dir_is_reached_through_a_symlink() {
    let sandboxer = with_packer_and_qemu();
    let real = sandboxer.root().join("real-state");
    std::fs::create_dir_all(&real).unwrap();
    let link = sandboxer.root().join("state-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // SANDBOXER_HOME names the symlink, as a home directory on a symlinked disk would.
    let sandboxer = sandboxer.with_state_dir(link);

    let record = create_json(&sandboxer, &[]);
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
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "fail", "fail.pkr.hcl");
    // Spelled out (long `--input`), as a user would type it.
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
    // Packer's error line is quoted, and the log path named.
    run.error_contains("Script exited with non-zero exit status: 1")
        .error_contains(&format!("sandbox {id} failed"))
        .error_contains(&log)
        // The provisioner's own explanation reached the person watching.
        .stderr_contains("fixture: disk quota exceeded while writing the image");

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
    assert_working_dirs_gone(&sandboxer, &id, "a failed build");

    // With --json (and --quiet), the error object is the only thing on stdout.
    let json_args = [&args[..], &["--json", "--quiet"]].concat();
    let run = sandboxer.run(&json_args).code(1);
    let error = assert_json_error(&run, "failed", 1);
    let object = error.as_object().expect("an error object");
    assert_eq!(
        object.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["error", "message", "exit_code"]),
        "{error:#}"
    );
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
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "fail", "fail.pkr.hcl");
    let options = ["-q", "--on-failure", "keep"];
    let run = create(&sandboxer, &options, &[&template, "vm_name=kept"]).code(1);
    let record = sandboxer.only_record();
    assert_eq!(record["state"], "failed", "{record:#}\n{}", run.describe());
    let id = str_field(&record, "id");
    let partial = sandboxer.sandbox_dir(id).join("output/kept.partial");
    assert_eq!(std::fs::read_to_string(&partial).unwrap(), "partial\n");
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    assert!(log.contains("-on-error=abort"), "{log}");
    // Packer's processes are gone all the same.
    assert_no_processes_of(id);
    // A teardown removes what was kept.
    sandboxer.run(&["teardown", id]).success();
    assert!(!partial.exists());
}

#[test]
fn failed_record_reason_quotes_packer() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "fail", "fail.pkr.hcl");
    create(&sandboxer, &["-q"], &[&template]).code(1);
    let record = sandboxer.only_record();
    let reason = str_field(&record, "state_reason");
    assert!(
        reason.contains("Script exited with non-zero exit status: 1"),
        "`show` should say why the build failed, not only that it did: {reason:?}"
    );
}

#[test]
fn syntax_error_keeps_packers_file_and_line() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "syntax-error", "broken.pkr.hcl");
    // File and line, the offending line, and Packer's diagnosis.
    create(&sandboxer, &["-q"], &[&template])
        .code(1)
        .error_contains("broken.pkr.hcl line 7")
        .error_contains("this line is not valid hcl")
        .error_contains("Invalid block definition");
    assert_eq!(sandboxer.only_record()["state"], "failed");
}

#[test]
fn pinned_plugins_on_an_old_packer_fail_with_packers_error_and_a_hint() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "plugins", "plugins.pkr.hcl");
    // Debian's Packer 1.6.6 has no `packer init`: sandboxer must not run it, and must say why
    // the build cannot work, beside Packer's own located error.
    create(&sandboxer, &["-q"], &[&template])
        .code(1)
        .error_contains("plugins.pkr.hcl line 3")
        .error_contains("required_plugins")
        .error_contains("needs `packer init` from Packer 1.7 or later");
    let record = sandboxer.only_record();
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    assert!(
        !log.contains(" init "),
        "no packer init on a Packer without it: {log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Sensitive values
// ---------------------------------------------------------------------------------------------

#[test]
fn sensitive_template_variable_never_leaves_packer() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "sensitive", "sensitive.pkr.hcl");
    // Two parts around a comma, which Packer escapes in machine-readable output.
    let secrets = ["s3cr3t-value", "second-half"];
    let token = format!("var.token={},{}", secrets[0], secrets[1]);
    // The build did echo it (so the redaction was put to work), and the redaction shows.
    let created = create(&sandboxer, &[], &[&template, "vm_name=sec", &token])
        .success()
        .stderr_contains("token=<redacted>")
        .stderr_contains("stderr-token=<redacted>");
    let id = created.stdout.trim();

    let record = sandboxer.stored_record(id);
    assert_eq!(record["inputs"]["var.token"], "<redacted>", "{record:#}");
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    // Not in Packer's argv, which every local user can read: a private var file instead.
    assert!(log.contains("-var-file="), "{log}");
    assert!(!log.contains("-var token="), "{log}");
    assert!(log.contains("token=<redacted>\n"), "{log}");

    assert_no_secret(&sandboxer, &secrets, &[id], &[&created]);
}

#[test]
fn profile_sensitive_inputs_hide_a_variable_the_template_does_not_mark() {
    let sandboxer = with_packer();
    let profiles = write_fixture_profile(&sandboxer, "plain-token", PLAIN_TOKEN_PROFILE);

    // The profile's own value.
    let from_profile = sandboxer
        .run(&create_from_args(&profiles, "plain-token", &[]))
        .success()
        .stderr_contains("token=<redacted>");
    let first = from_profile.stdout.trim();

    // A value given on the command line.
    let cli = ["--input", "var.token=cl1-s3cr3t"];
    let cli = create_from_args(&profiles, "plain-token", &cli);
    let from_cli = sandboxer
        .run(&cli)
        .success()
        .stderr_contains("token=<redacted>");
    let second = from_cli.stdout.trim();

    for id in [first, second] {
        let record = sandboxer.stored_record(id);
        assert_eq!(record["state"], "ready");
        assert_eq!(record["inputs"]["var.token"], "<redacted>", "{record:#}");
    }
    let show_profile = [
        "--profiles-dir",
        &profiles,
        "profiles",
        "show",
        "plain-token",
    ];
    let shown = sandboxer.run(&show_profile).success();
    let shown_json = [&show_profile[..], &["--json"]].concat();
    let shown_json = sandboxer.run(&shown_json).success();
    assert_no_secret(
        &sandboxer,
        &["pr0file-s3cr3t", "cl1-s3cr3t"],
        &[first, second],
        &[&from_profile, &from_cli, &shown, &shown_json],
    );
}

#[test]
fn a_secret_in_a_failing_build_is_redacted_in_its_reason_error_and_json_error() {
    let sandboxer = with_packer();
    // The build fails with `open missing-<token>: no such file or directory`: the secret is in
    // Packer's own error line, which becomes the state reason and the error message.
    let template = template_input(&sandboxer, "fail-secret", "fail-secret.pkr.hcl");
    let secret = "f4il-s3cr3t";
    let token = format!("var.token={secret}");
    let inputs = [template.as_str(), "vm_name=failing", &token];
    let human = create(&sandboxer, &[], &inputs)
        .code(1)
        .error_contains("open missing-<redacted>: no such file or directory");
    let json = create(&sandboxer, &["--json"], &inputs).code(1);
    let error = assert_json_error(&json, "failed", 1);
    assert!(
        str_field(&error, "message").contains("open missing-<redacted>:"),
        "{error:#}"
    );
    let ids = sandboxer.ids();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let record = sandboxer.show(id);
        assert_eq!(record["state"], "failed", "{record:#}");
        assert!(
            str_field(&record, "state_reason").contains("open missing-<redacted>:"),
            "{record:#}"
        );
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_secret(&sandboxer, &[secret], &ids, &[&human, &json]);
}

#[test]
fn a_secret_with_a_newline_and_a_comma_is_redacted_whole_and_line_by_line() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "sensitive", "sensitive.pkr.hcl");
    // Packer escapes the comma in machine-readable output (`%!(PACKER_COMMA)`), and the build
    // prints the value as the two lines it is, each in a line of its own.
    let lines = ["first,line", "second line"];
    let token = format!("var.token={}\n{}", lines[0], lines[1]);
    let created = create(&sandboxer, &[], &[&template, "vm_name=multi", &token])
        .success()
        .stderr_contains("token=<redacted>\n")
        .stderr_contains("null.sensitive: <redacted>\n");
    let id = created.stdout.trim();
    let escaped = "first%!(PACKER_COMMA)line";
    assert_no_secret(
        &sandboxer,
        &[lines[0], escaped, lines[1]],
        &[id],
        &[&created],
    );
}

#[test]
fn a_short_secret_is_redacted_too() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "sensitive", "sensitive.pkr.hcl");
    let secret = "@Q";
    let token = format!("var.token={secret}");
    let created = create(&sandboxer, &[], &[&template, "vm_name=short", &token])
        .success()
        .stderr_contains("token=<redacted>\n");
    let id = created.stdout.trim();
    assert_no_secret(&sandboxer, &[secret], &[id], &[&created]);
}

/// A one-character secret is hidden in what the build printed without breaking the log's lines:
/// their timestamps (full of digits) and types stay readable, so the build is still understood.
#[test]
fn a_one_digit_secret_never_breaks_the_log() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "sensitive", "sensitive.pkr.hcl");
    let created = create(
        &sandboxer,
        &["--json"],
        &[&template, "vm_name=digit", "var.token=7"],
    )
    .success()
    .stderr_contains("token=<redacted>\n");
    let record = created.json();
    assert_eq!(record["state"], "ready");
    let log = std::fs::read_to_string(record["log"].as_str().unwrap()).unwrap();
    for line in log.lines().filter(|line| !line.starts_with("# sandboxer")) {
        let fields: Vec<&str> = line.splitn(4, ',').collect();
        assert!(
            fields.len() >= 3
                && fields[0].bytes().all(|b| b.is_ascii_digit())
                && !fields[0].is_empty()
                && !fields[2].contains("<redacted>"),
            "a line lost its structure: {line}"
        );
    }
    assert!(log.contains("token=<redacted>"), "{log}");
}

#[test]
fn a_running_packer_gets_secrets_from_a_private_var_file_not_its_argv_or_environment() {
    let sandboxer = with_packer();
    let secret = "pr0c-s3cr3t";
    let token = format!("var.token={secret}");
    let (running, gate, id) = start_gated_build(&sandboxer, &[&token, "vm_name=proc"]);
    let pgid = sandboxer.stored_record(&id)["owner"]["pgid"]
        .as_u64()
        .expect("the running build's group is recorded") as u32;

    // Packer (the group's leader) is told where the values are ...
    let var_file = sandboxer.sandbox_dir(&id).join("work/sensitive-vars.json");
    let argv = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap();
    let argv: Vec<String> = argv
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    assert!(
        argv.contains(&format!("-var-file={}", var_file.display())),
        "{argv:?}"
    );
    // ... and no process of the build, which any local user can inspect, holds them.
    let group = processes_in_group(pgid);
    assert!(group.len() > 1, "packer, its plugins and the provisioner");
    for pid in group {
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "/proc/{pid}/{file} holds the secret: {}",
                String::from_utf8_lossy(&bytes).replace('\0', " ")
            );
        }
    }
    // The var file is readable by this user alone, and gone with the run.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&var_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let vars: Value = serde_json::from_slice(&std::fs::read(&var_file).unwrap()).unwrap();
    assert_eq!(vars, serde_json::json!({"token": secret}));

    std::fs::write(&gate, "").unwrap();
    let run = running.finish().success();
    assert!(
        !var_file.exists(),
        "{} outlived the run",
        var_file.display()
    );
    assert_no_secret(&sandboxer, &[secret], &[&id], &[&run]);
}

// ---------------------------------------------------------------------------------------------
// 6. Undeclared variables
// ---------------------------------------------------------------------------------------------

#[test]
fn undeclared_variable_is_refused_before_packer_runs() {
    let sandboxer = Sandboxer::new();
    // A stand-in Packer that leaves a mark if anyone runs it.
    let marker = sandboxer.root().join("packer-was-run");
    let fake = sandboxer.root().join("fake-packer");
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
    let template = template_input(&sandboxer, "sensitive", "sensitive.pkr.hcl");

    // The nearest declared name is suggested, and the declared variables are listed.
    create(&sandboxer, &[], &[&template, "var.tokn=x"])
        .code(2)
        .error_contains("declares no variable `tokn`")
        .error_contains("did you mean `var.token`?")
        .error_contains("(declared: output_directory, token, vm_name)");

    // Variables sandboxer sets itself are refused too, pointing at the right input.
    create(&sandboxer, &[], &[&template, "var.vm_name=x"])
        .code(2)
        .error_contains("use the `vm_name` input instead");

    // Same for a legacy JSON template.
    let legacy = template_input(&sandboxer, "legacy", "legacy.json");
    let run = create(&sandboxer, &["--json"], &[&legacy, "var.nope=1"]).code(2);
    let error = assert_json_error(&run, "usage", 2);
    assert!(str_field(&error, "message").contains("declared: output_directory, token, vm_name"));

    assert!(
        !marker.exists(),
        "packer ran although the input was refused"
    );
    assert_no_sandbox(&sandboxer);
}

// ---------------------------------------------------------------------------------------------
// 7. Other template forms
// ---------------------------------------------------------------------------------------------

#[test]
fn legacy_json_template_builds_and_hides_its_sensitive_variables() {
    let sandboxer = with_packer();
    let template = template_input(&sandboxer, "legacy", "legacy.json");
    let inputs = [
        template.as_str(),
        "vm_name=old-style",
        "var.token=l3gacy-s3cr3t",
    ];
    let created = create(&sandboxer, &["--json"], &inputs).success();
    let record = created.json();
    assert_eq!(record["state"], "ready", "{record:#}");
    let ova = assert_artifact_matches_file(&record, "old-style.ova");
    assert_eq!(std::fs::read_to_string(ova).unwrap(), "legacy-image\n");
    // `sensitive-variables` marks it, as `sensitive = true` does in HCL2.
    assert_eq!(record["inputs"]["var.token"], "<redacted>");
    let created = created.stderr_contains("token=<redacted>");
    let id = str_field(&record, "id");
    assert_no_secret(&sandboxer, &["l3gacy-s3cr3t"], &[id], &[&created]);
}

#[test]
fn directory_template_builds() {
    let sandboxer = with_packer();
    let template = sandboxer.fixture("dir-template");
    let input = format!("packer_template={template}");
    let record = create_json(&sandboxer, &[&input, "vm_name=from-dir"]);
    assert_eq!(record["state"], "ready");
    let ova = assert_artifact_matches_file(&record, "from-dir.ova");
    assert_eq!(std::fs::read_to_string(ova).unwrap(), "dir-image\n");
    // A trailing slash names the same directory.
    let record = create_json(&sandboxer, &[&format!("{input}/"), "vm_name=slash"]);
    assert_artifact_matches_file(&record, "slash.ova");
}

// ---------------------------------------------------------------------------------------------
// 8. Usage errors
// ---------------------------------------------------------------------------------------------

#[test]
fn input_mode_attach_overrides_a_build_profile() {
    let sandboxer = Sandboxer::new();
    // The build profile's template is not needed, its vm_name is, and attach mode's own checks
    // run: with no address for the VM, nothing is allocated.
    create(&sandboxer, &[], &["mode=attach"])
        .code(2)
        .error_contains("attach mode needs the address of vm `example-vm`");
    let run = create(&sandboxer, &["--json"], &["mode=attach"]).code(2);
    assert_json_error(&run, "usage", 2);
    assert_no_sandbox(&sandboxer);
}

#[test]
fn unknown_input_suggests_the_nearest_name() {
    let sandboxer = Sandboxer::new();
    create(&sandboxer, &[], &["vm_nmae=x"])
        .code(2)
        .error_contains("unknown input `vm_nmae`")
        .error_contains("did you mean `vm_name`?");
    assert_no_sandbox(&sandboxer);
}

#[test]
fn missing_packer_is_a_clear_usage_error() {
    let sandboxer = Sandboxer::new().env("SANDBOXER_PACKER", "/nonexistent/packer");
    create(&sandboxer, &[], &[])
        .code(2)
        .error_contains("SANDBOXER_PACKER=/nonexistent/packer")
        .error_contains("not an executable");
    assert_no_sandbox(&sandboxer);

    // No SANDBOXER_PACKER and no packer on PATH: the error says how to point at one.
    let empty_bin = sandboxer.root().join("empty-bin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    let without_packer = Sandboxer::new().env("PATH", &empty_bin);
    create(&without_packer, &[], &[])
        .code(2)
        .error_contains("`packer` not found on PATH")
        .error_contains("SANDBOXER_PACKER");
    assert_no_sandbox(&without_packer);
}

// ---------------------------------------------------------------------------------------------
// 9. Paths and working directories
// ---------------------------------------------------------------------------------------------

#[test]
fn relative_template_resolves_from_cwd_and_builds_in_its_own_directory() {
    let sandboxer = with_packer();
    // cwd/templates/relative/{relative.pkr.hcl,payload.txt}; sandboxer runs in cwd, so the
    // template's `cp payload.txt ...` works only if Packer runs in the template's directory.
    let template = sandboxer.fixture("relative");
    let payload = sandboxer.cwd().join(&template).join("payload.txt");
    assert!(!sandboxer.cwd().join("payload.txt").exists());

    let input = format!("packer_template={template}/relative.pkr.hcl");
    let record = create_json(&sandboxer, &[&input, "vm_name=rel"]);
    let ova = assert_artifact_matches_file(&record, "rel.ova");
    assert_eq!(sha256_file(&ova), sha256_file(&payload));
    // The record keeps the input as given.
    assert_eq!(
        record["inputs"]["packer_template"],
        format!("{template}/relative.pkr.hcl")
    );

    // The same relative path from another directory does not exist there: a usage error that
    // names the directory relative paths are resolved from.
    let elsewhere = sandboxer.cwd().join("templates");
    sandboxer
        .run_in(&elsewhere, &create_args(&[], &[&input]))
        .code(2)
        .error_contains("cannot read")
        .error_contains(elsewhere.to_str().unwrap());

    // An absolute path works from anywhere.
    let absolute = sandboxer.cwd().join(&template).join("relative.pkr.hcl");
    let absolute = format!("packer_template={}", absolute.display());
    let args = create_args(&["--json", "-q"], &[&absolute, "vm_name=abs"]);
    let record = sandboxer.run_in(sandboxer.root(), &args).success().json();
    let ova = assert_artifact_matches_file(&record, "abs.ova");
    assert_eq!(sha256_file(&ova), sha256_file(&payload));
}

#[test]
fn project_input_reaches_only_templates_that_declare_it() {
    let sandboxer = with_packer_and_qemu();
    let profiles = write_fixture_profile(&sandboxer, "project", PROJECT_PROFILE);
    let args = create_from_args(
        &profiles,
        "project-build",
        &["--json", "-q", "-i", "project=web"],
    );
    let record = sandboxer.run(&args).success().json();
    assert_eq!(record["inputs"]["vm_name"], "build-web", "{record:#}");
    assert_eq!(record["inputs"]["project"], "web");
    let ova = assert_artifact_matches_file(&record, "build-web.ova");
    assert_eq!(std::fs::read_to_string(ova).unwrap(), "project=web\n");

    // The bundled example declares no `project`: it is not passed, and the build succeeds.
    let record = create_json(&sandboxer, &["project=web"]);
    assert_eq!(record["state"], "ready");
    let log = std::fs::read_to_string(str_field(&record, "log")).unwrap();
    assert!(!log.contains("-var project="), "{log}");
}

// ---------------------------------------------------------------------------------------------
// 10. Leftovers and cancellation
// ---------------------------------------------------------------------------------------------

#[test]
fn successful_builds_leave_no_temp_files_or_processes() {
    let sandboxer = with_packer_and_qemu();
    // The bundled example (a post-processor script) ...
    let record = create_json(&sandboxer, &[]);
    assert_no_leftovers(&sandboxer, str_field(&record, "id"));
    // ... and a template whose inline provisioner Packer writes to a temp script.
    let template = sandboxer.fixture("sensitive");
    let input = format!("packer_template={template}/sensitive.pkr.hcl");
    let record = create_json(&sandboxer, &[&input, "var.token=t"]);
    assert_no_leftovers(&sandboxer, str_field(&record, "id"));
    // Nothing was written next to the template.
    let mut beside: Vec<String> = std::fs::read_dir(sandboxer.cwd().join(&template))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["sensitive.pkr.hcl"]);
}

/// Starts a build of the `gate` fixture with `inputs` and returns once its provisioner runs,
/// with the path that opens the gate and the sandbox's id.
fn start_gated_build(sandboxer: &Sandboxer, inputs: &[&str]) -> (Running, PathBuf, String) {
    let template = template_input(sandboxer, "gate", "gate.pkr.hcl");
    let gate = sandboxer.root().join("gate-open");
    let gate_input = format!("var.gate={}", gate.display());
    let inputs = [&[template.as_str(), &gate_input][..], inputs].concat();
    let mut running = sandboxer.start(&create_args(&["--json"], &inputs));
    running.wait_for_stderr("build started");
    let id = str_field(&sandboxer.only_record(), "id").to_owned();
    (running, gate, id)
}

#[test]
fn sigint_cancels_the_build_and_everything_it_started() {
    cancel_a_gated_build("INT", 130, "interrupted", "SIGINT");
}

#[test]
fn sigterm_cancels_the_build_and_everything_it_started() {
    cancel_a_gated_build("TERM", 143, "terminated", "SIGTERM");
}

/// Cancels a gated build that echoed a secret with `sig`, and checks the exit code, the JSON
/// error `kind`, the record, the redaction and that nothing of the build is left.
fn cancel_a_gated_build(sig: &str, code: i32, kind: &str, name: &str) {
    let sandboxer = with_packer();
    let secret = "g4te-s3cr3t";
    let token = format!("var.token={secret}");
    let (running, _gate, id) = start_gated_build(&sandboxer, &[&token]);
    let record = sandboxer.stored_record(&id);
    assert_eq!(record["state"], "provisioning", "{record:#}");
    assert!(
        record["owner"]["pgid"].is_u64(),
        "the running build's group is recorded: {record:#}"
    );

    // The gate stays shut: only the signal can end this build.
    signal(running.id(), sig);
    let run = running
        .finish()
        .code(code)
        .stderr_contains("token=<redacted>");
    assert_json_error(&run, kind, code);
    assert!(!run.stderr.contains("gate opened"), "{}", run.describe());

    let record = sandboxer.stored_record(&id);
    assert_eq!(record["state"], "cancelled", "{record:#}");
    assert!(
        str_field(&record, "state_reason").contains(name),
        "{record:#}"
    );
    assert!(record["owner"].is_null(), "{record:#}");
    // Packer, its plugins and the provisioner's shell loop are all gone, and so are the
    // temporary scripts Packer wrote (with the token in them) into its TMPDIR.
    assert_no_leftovers(&sandboxer, &id);
    assert_no_secret(&sandboxer, &[secret], &[&id], &[&run]);
    sandboxer.run(&["teardown", &id]).success();
}

#[test]
fn successful_build_clears_what_packer_left_in_its_tmpdir() {
    let sandboxer = with_packer();
    let (running, gate, id) = start_gated_build(&sandboxer, &["vm_name=gated"]);
    // Stand in for what Packer sometimes leaves in its TMPDIR (temp scripts, plugin sockets).
    let work = sandboxer.sandbox_dir(&id).join("work");
    std::fs::write(work.join("packer-shell-left-behind"), "echo token=secret\n").unwrap();
    std::fs::write(&gate, "").unwrap();
    let record = running.finish().success().json();
    assert_eq!(record["state"], "ready");
    assert_artifact_matches_file(&record, "gated.ova");
    assert_no_leftovers(&sandboxer, &id);
}

/// Issue 6, defect 1: a template variable marked sensitive that sandboxer feeds from one of its
/// own inputs (`project`, via `profile.vm-haskell-build`) leaked into Packer's argv, the record
/// and the log. Its value (and `vm_name`, which is made from it) must reach Packer only through
/// the private var file.
#[test]
fn a_sensitive_project_never_leaves_the_var_file() {
    let sandboxer = with_packer();
    let packer_dir = sandboxer.cwd().join("packer");
    std::fs::create_dir_all(&packer_dir).unwrap();
    std::fs::copy(
        crate::common::fixtures().join("templates/sensitive-project/haskell-build.pkr.hcl"),
        packer_dir.join("haskell-build.pkr.hcl"),
    )
    .unwrap();
    let secret = "quietproject7";
    let gate = sandboxer.root().join("gate-open");
    let gate_input = format!("var.gate={}", gate.display());
    let project = format!("project={secret}");
    let mut running = sandboxer.start(&[
        "create",
        "--profile",
        "profile.vm-haskell-build",
        "--json",
        "-i",
        &project,
        "-i",
        &gate_input,
    ]);
    running.wait_for_stderr("build started");
    // sandboxer's own command line holds what the user typed; nothing it starts may.
    let own = format!("{}: ", running.id());
    let running_with_secret: Vec<String> = processes_mentioning(secret)
        .into_iter()
        .filter(|process| !process.starts_with(&own))
        .collect();
    std::fs::write(&gate, "").unwrap();
    let run = running.finish().success();
    assert!(
        running_with_secret.is_empty(),
        "the project reached a command line or environment: {running_with_secret:#?}"
    );
    let record = run.json();
    assert_eq!(record["inputs"]["project"], "<redacted>", "{record:#}");
    assert_eq!(
        record["inputs"]["vm_name"], "<redacted>",
        "vm_name is made from the project: {record:#}"
    );
    let id = str_field(&record, "id").to_owned();
    let log = std::fs::read_to_string(sandboxer.sandbox_dir(&id).join("provision.log")).unwrap();
    assert!(
        log.contains("building project=<redacted> as <redacted>"),
        "{log}"
    );
    assert_no_secret(&sandboxer, &[secret], &[&id], &[&run]);
}
