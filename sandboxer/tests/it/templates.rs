//! Template sets as teams write them, built by the real Packer: var files, `only`/`except`,
//! several sources in one build, builds chosen through a variable.
//!
//! Every test builds `tests/fixtures/templates/multi-os/` (copied first): one template
//! directory of three files declaring many variables, three OS sources named statically and a
//! `flavors` build whose sources come from a variable; a var file per OS; one profile per OS.
//! Each build writes `<vm_name>-<source>.ova`, a line that reports the values it was given.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common::{Run, Sandboxer, require_tool};
use crate::packer_build::{assert_no_secret, files_containing};

/// A sandboxer with the template set copied into `cwd/templates/multi-os`; returns that
/// directory, where the tests run (its `profiles/` is on the default search path there).
fn template_set() -> (Sandboxer, PathBuf) {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let dir = sandboxer.cwd().join(sandboxer.fixture("multi-os"));
    (sandboxer, dir)
}

/// `create --profile PROFILE --json -q -i INPUT...` in the template set's directory.
fn create(sandboxer: &Sandboxer, dir: &Path, profile: &str, inputs: &[&str]) -> Run {
    let mut args = vec!["create", "--profile", profile, "--json", "-q"];
    for input in inputs {
        args.extend(["-i", input]);
    }
    sandboxer.run_in(dir, &args)
}

/// The record's `builds`, as `(name, outcome)`.
fn builds(record: &Value) -> Vec<(String, String)> {
    record["builds"]
        .as_array()
        .unwrap_or_else(|| panic!("no builds array: {record:#}"))
        .iter()
        .map(|build| {
            (
                build["name"].as_str().unwrap().to_owned(),
                build["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn succeeded(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| ((*name).to_owned(), "succeeded".to_owned()))
        .collect()
}

/// Each artifact as `(file name, build)`, sorted by file name; checks that each entry
/// describes its file exactly (size and sha256).
fn artifacts(record: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = record["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts array: {record:#}"))
        .iter()
        .map(|artifact| {
            let path = PathBuf::from(artifact["path"].as_str().unwrap());
            let bytes =
                std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            assert_eq!(artifact["bytes"], bytes.len() as u64, "{artifact:#}");
            assert_eq!(
                artifact["sha256"],
                format!("{:x}", Sha256::digest(&bytes)),
                "{artifact:#}"
            );
            (
                path.file_name().unwrap().to_str().unwrap().to_owned(),
                artifact["build"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

/// The report line the build wrote into the artifact named `file_name`.
fn report_in(record: &Value, file_name: &str) -> String {
    let artifact = record["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|artifact| artifact["path"].as_str().unwrap().ends_with(file_name))
        .unwrap_or_else(|| panic!("no artifact {file_name}: {record:#}"));
    std::fs::read_to_string(artifact["path"].as_str().unwrap())
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn an_os_profile_builds_exactly_its_source_with_its_var_file() {
    let (sandboxer, dir) = template_set();
    let record = create(&sandboxer, &dir, "debian", &[]).success().json();
    assert_eq!(builds(&record), succeeded(&["null.debian"]));
    assert_eq!(
        artifacts(&record),
        [("debian-13-debian.ova".to_owned(), "null.debian".to_owned())]
    );
    assert!(
        report_in(&record, "debian-13-debian.ova").starts_with("os=debian-13 cpus=4 "),
        "{record:#}"
    );
    assert_eq!(
        record["inputs"]["var_files"],
        serde_json::json!(["os_pkrvars/debian.pkrvars.hcl"])
    );
    assert_eq!(record["inputs"]["only"], serde_json::json!(["null.debian"]));

    // The JSON var file form, through another OS's profile.
    let record = create(&sandboxer, &dir, "alpine", &[]).success().json();
    assert_eq!(builds(&record), succeeded(&["null.alpine"]));
    assert!(
        report_in(&record, "alpine-320-alpine.ova").starts_with("os=alpine-3.20 "),
        "{record:#}"
    );
}

#[test]
fn except_skips_the_named_builds() {
    let (sandboxer, dir) = template_set();
    let record = create(
        &sandboxer,
        &dir,
        "debian",
        &["only=", "except=null.ubuntu", "except+=null.alpine"],
    )
    .success()
    .json();
    assert_eq!(
        artifacts(&record),
        [
            ("debian-13-debian.ova".to_owned(), "null.debian".to_owned()),
            (
                "debian-13-flavor-small.ova".to_owned(),
                "flavors.null.small".to_owned()
            ),
        ]
    );
    let mut names: Vec<String> = builds(&record).into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["flavors.null.small", "null.debian"]);
}

#[test]
fn var_files_follow_packers_precedence() {
    let (sandboxer, dir) = template_set();
    // template default < the template's own auto var file < var_files in order < --input var.
    let record = create(
        &sandboxer,
        &dir,
        "debian",
        &[
            "var_files+=os_pkrvars/override.pkrvars.hcl",
            "var.level_input=input",
        ],
    )
    .success()
    .json();
    assert_eq!(
        report_in(&record, "debian-13-debian.ova"),
        "os=debian-13 cpus=4 level_default=template-default level_auto=auto \
         level_file1=file1 level_file2=file2 level_input=input"
    );

    // The same files the other way round: the later file wins.
    let record = create(
        &sandboxer,
        &dir,
        "debian",
        &[
            "var_files=os_pkrvars/override.pkrvars.hcl",
            "var_files=os_pkrvars/debian.pkrvars.hcl",
        ],
    )
    .success()
    .json();
    assert_eq!(
        report_in(&record, "debian-13-debian.ova"),
        "os=debian-13 cpus=4 level_default=template-default level_auto=auto \
         level_file1=file1 level_file2=file1 level_input=file1"
    );
}

#[test]
fn a_secret_from_a_var_file_is_never_written_down() {
    let (sandboxer, dir) = template_set();
    let secret = "vf-s3cret-pw";
    let args = [
        "create",
        "--profile",
        "debian",
        "-i",
        "var_files+=os_pkrvars/secret.pkrvars.hcl",
    ];
    // Without -q: Packer's own output goes through the terminal too.
    let run = sandboxer.run_in(&dir, &args).success();
    let id = run.stdout.trim().to_owned();
    let log = std::fs::read_to_string(sandboxer.show(&id)["log"].as_str().unwrap()).unwrap();
    // The build echoed it, so Packer printed it; sandboxer hid it.
    assert!(
        log.contains("building debian as vagrant:<redacted>"),
        "the build's echo is in the log, redacted: {log}"
    );
    assert_no_secret(&sandboxer, &[secret, "vf-t0ken-9f8e7d"], &[&id], &[&run]);
    // The var file itself is the user's, outside the state dir, and stays where it was.
    assert!(!files_containing(&dir.join("os_pkrvars"), secret).is_empty());
}

#[test]
fn a_multi_source_build_keeps_and_attributes_every_artifact() {
    let (sandboxer, dir) = template_set();
    let record = create(
        &sandboxer,
        &dir,
        "debian",
        &["only=null.debian", "only=null.ubuntu"],
    )
    .success()
    .json();
    let mut names: Vec<String> = builds(&record).into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["null.debian", "null.ubuntu"]);
    assert_eq!(
        artifacts(&record),
        [
            ("debian-13-debian.ova".to_owned(), "null.debian".to_owned()),
            ("debian-13-ubuntu.ova".to_owned(), "null.ubuntu".to_owned()),
        ]
    );
    // Both built with the one var file the profile names, each its own image.
    let debian = report_in(&record, "debian-13-debian.ova");
    let ubuntu = report_in(&record, "debian-13-ubuntu.ova");
    assert_eq!(debian, ubuntu, "the same values reach both sources");

    // Teardown keeps both, each still attributed.
    let id = record["id"].as_str().unwrap();
    let torn = sandboxer.run(&["teardown", id, "--json"]).success().json();
    let kept = artifacts(&torn);
    assert_eq!(kept.len(), 2, "{torn:#}");
    for artifact in torn["artifacts"].as_array().unwrap() {
        let path = Path::new(artifact["path"].as_str().unwrap());
        assert!(
            path.starts_with(sandboxer.state_dir().join("artifacts").join(id)),
            "kept in the state dir's artifacts: {}",
            path.display()
        );
    }
    assert_eq!(builds(&torn).len(), 2, "{torn:#}");
}

#[test]
fn builds_chosen_through_a_variable_and_globs_pass_through_to_packer() {
    let (sandboxer, dir) = template_set();
    let run = sandboxer
        .run_in(
            &dir,
            &[
                "-v",
                "create",
                "--profile",
                "debian",
                "--json",
                "-i",
                "var.flavors=[\"big\", \"tiny\"]",
                "-i",
                "only=flavors.null.big",
                "-i",
                "only+=null.deb*",
            ],
        )
        .success()
        .stderr_contains("`only` entry `flavors.null.big` passed to Packer unchecked")
        .stderr_contains("build block `flavors` makes its sources with `dynamic \"source\"`")
        .stderr_contains("`only` entry `null.deb*` is a glob");
    let record = run.json();
    let mut names: Vec<String> = builds(&record).into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["flavors.null.big", "null.debian"]);

    // Without -v, nothing is said about it.
    let quiet = create(&sandboxer, &dir, "debian", &["only=null.deb*"]).success();
    assert!(!quiet.stderr.contains("glob"), "{}", quiet.describe());

    // A glob that matches nothing: Packer builds nothing and succeeds; sandboxer says so.
    let none = sandboxer
        .run_in(
            &dir,
            &["create", "--profile", "debian", "-i", "only=nothing.*"],
        )
        .success()
        .stderr_contains(
            "warning: packer ran no build: -only=nothing.* left none of the template's builds",
        );
    let record = sandboxer.show(none.stdout.trim());
    assert_eq!(builds(&record), Vec::<(String, String)>::new());
}

#[test]
fn an_undeclared_variable_in_a_var_file_is_a_warning_unless_strict() {
    let (sandboxer, dir) = template_set();
    let warning = "os_pkrvars/undeclared.pkrvars.hcl:2:1: undefined variable `os_nmae`: set here, \
                   but template template declares no such variable; did you mean `os_name`?";
    let run = sandboxer
        .run_in(
            &dir,
            &[
                "create",
                "--profile",
                "debian",
                "-i",
                "var_files+=os_pkrvars/undeclared.pkrvars.hcl",
            ],
        )
        .success()
        .stderr_contains(&format!("sandboxer: warning: {warning}"));
    let id = run.stdout.trim();
    let record = sandboxer.show(id);
    let log = std::fs::read_to_string(record["log"].as_str().unwrap()).unwrap();
    assert!(log.contains(warning), "the log keeps the warning: {log}");

    // A profile that says strict_vars = true refuses it before anything is built.
    let strict = std::fs::read_to_string(dir.join("profiles/profile.debian.toml"))
        .unwrap()
        .replace("profile.debian", "profile.debian-strict")
        .replace("[inputs]\n", "[inputs]\nstrict_vars = true\n");
    std::fs::write(dir.join("profiles/profile.debian-strict.toml"), strict).unwrap();
    let before = sandboxer.ids();
    sandboxer
        .run_in(
            &dir,
            &[
                "create",
                "--profile",
                "debian-strict",
                "-i",
                "var_files+=os_pkrvars/undeclared.pkrvars.hcl",
            ],
        )
        .code(2)
        .error_contains(&format!("error: {warning} (strict_vars = true)"));
    assert_eq!(sandboxer.ids(), before, "nothing allocated");
}
