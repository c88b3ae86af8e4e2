//! What an operator uses to watch and find things: `logs` (with `--follow` against a real
//! Packer build), and shell completions driven through a real bash.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Run, Sandboxer, fixtures, require_tool, signal};

/// Starts a build of the `gate` fixture (it prints `build started`, then waits for the file
/// `gate` names) and returns once it runs: the running create, the gate's path, the id.
fn start_gated(sandboxer: &Sandboxer) -> (crate::common::Running, std::path::PathBuf, String) {
    require_tool("packer");
    let template = fixtures().join("templates/gate/gate.pkr.hcl");
    let gate = sandboxer.root().join("gate-open");
    let mut running = sandboxer.start(&[
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        &format!("packer_template={}", template.display()),
        "-i",
        &format!("var.gate={}", gate.display()),
        "-i",
        "vm_name=gated",
    ]);
    running.wait_for_stderr("build started");
    let id = sandboxer.ids().pop().expect("a sandbox");
    (running, gate, id)
}

/// Starts `logs ID --follow`, its stdout readable line by line.
fn follow(
    sandboxer: &Sandboxer,
    id: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut follower = sandboxer
        .command(&["logs", id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(follower.stdout.take().unwrap());
    (follower, stdout)
}

/// Reads a child's stdout until a line contains `needle`, returning what it read.
fn read_until(stdout: &mut impl std::io::BufRead, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "output ended before {needle:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(needle) {
            return seen;
        }
    }
}

#[test]
fn logs_follow_streams_a_running_build_until_it_is_ready() {
    let sandboxer = Sandboxer::new();
    let (running, gate, id) = start_gated(&sandboxer);

    let (follower, mut stdout) = follow(&sandboxer, &id);
    let before = read_until(&mut stdout, "build started");
    assert!(before.contains("# sandboxer: running"), "{before}");
    // The follower is waiting for more; the build goes on only now.
    std::fs::write(&gate, "").unwrap();
    let after = read_until(&mut stdout, "gate opened");
    assert!(!after.contains("build started"), "printed twice: {after}");
    let follower = Run::from_child(&["logs", "--follow"], follower).success();
    running.finish().success();
    assert!(
        follower.stderr.contains(&format!("sandbox {id} is ready")),
        "{}",
        follower.describe()
    );

    // Without --follow: the whole log, once, and the same bytes as the file.
    let whole = sandboxer.run(&["logs", &id]).success();
    let file = std::fs::read_to_string(sandboxer.sandbox_dir(&id).join("provision.log")).unwrap();
    assert_eq!(whole.stdout, file);
    assert!(whole.stderr.is_empty(), "{}", whole.describe());
}

#[test]
fn logs_follow_ends_when_the_build_is_orphaned() {
    let sandboxer = Sandboxer::new();
    let (running, _gate, id) = start_gated(&sandboxer);
    let (follower, mut stdout) = follow(&sandboxer, &id);
    read_until(&mut stdout, "build started");
    signal(running.id(), "KILL");
    let _ = running.finish();
    // The follower notices the dead owner (the build itself, orphaned, still waits at the gate).
    let started = std::time::Instant::now();
    let follower = Run::from_child(&["logs", "--follow"], follower).success();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        follower.stderr.contains("is failed: orphaned"),
        "{}",
        follower.describe()
    );
    // Stop the orphaned build.
    sandboxer.run(&["teardown", &id]).success();
}

#[test]
fn logs_of_an_unknown_sandbox_is_not_found() {
    let sandboxer = Sandboxer::new();
    sandboxer
        .run(&["logs", "sb-nope"])
        .code(3)
        .error_contains("no sandbox `sb-nope`");
}

/// Sources `sandboxer completions bash` into a real bash and asks its completion function,
/// as bash does when the user presses Tab after `words`.
fn bash_complete(sandboxer: &Sandboxer, words: &[&str]) -> Vec<String> {
    require_tool("bash");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_sandboxer"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let script = format!(
        r#"source <(sandboxer completions bash)
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_TYPE=9
_clap_complete_sandboxer sandboxer '{current}' '{previous}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" "),
        cword = words.len() - 1,
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    );
    // The harness's environment (state dir, HOME, ...) with bash in sandboxer's place.
    let harness: Command = sandboxer.command(&[]);
    let mut bash = Command::new("bash");
    bash.args(["--noprofile", "--norc", "-c", &script])
        .env("PATH", path)
        .current_dir(harness.get_current_dir().unwrap());
    for (name, value) in harness.get_envs() {
        match value {
            Some(value) => bash.env(name, value),
            None => bash.env_remove(name),
        };
    }
    let output = bash.output().unwrap();
    assert!(
        output.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn bash_completes_commands_profiles_and_sandbox_ids() {
    let sandboxer = Sandboxer::new();
    let commands = bash_complete(&sandboxer, &["sandboxer", "te"]);
    assert_eq!(commands, ["teardown"]);
    let profiles = bash_complete(&sandboxer, &["sandboxer", "create", "--profile", "vm-p"]);
    assert_eq!(profiles, ["vm-packer-build"]);

    // Completion only lists sandbox directories; it never opens (or creates) anything.
    let state = sandboxer.state_dir().join("sandboxes/sb-test0000001");
    std::fs::create_dir_all(&state).unwrap();
    let ids = bash_complete(&sandboxer, &["sandboxer", "show", "sb-te"]);
    assert_eq!(ids, ["sb-test0000001"]);
}

#[test]
fn doctor_reports_sandboxes_waiting_for_gc_without_touching_them() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let quick = fixtures().join("templates/quick/quick.pkr.hcl");
    let id = sandboxer
        .run(&[
            "create",
            "--profile",
            "vm-packer-build",
            "--ttl",
            "1s",
            "-q",
            "-i",
            &format!("packer_template={}", quick.display()),
        ])
        .success()
        .stdout
        .trim()
        .to_owned();
    std::thread::sleep(Duration::from_millis(1100));
    let before = sandboxer.stored_record(&id);
    let checks = sandboxer.run(&["doctor", "--json"]).success().json();
    let sandboxes = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "sandboxes")
        .unwrap();
    assert_eq!(sandboxes["status"], "warn", "{checks:#}");
    assert!(
        sandboxes["detail"].as_str().unwrap().contains("1 expired"),
        "{checks:#}"
    );
    assert_eq!(sandboxes["fix"], "run `sandboxer gc` (or schedule it)");
    for check in checks.as_array().unwrap() {
        assert_ne!(check["status"], "fail", "{checks:#}");
    }
    assert_eq!(
        sandboxer.stored_record(&id),
        before,
        "doctor changed a record"
    );
}

/// `doctor --json` as a map from check name to the check.
fn doctor_checks(run: &Run) -> std::collections::BTreeMap<String, serde_json::Value> {
    run.json()
        .as_array()
        .expect("doctor --json prints an array")
        .iter()
        .map(|check| (check["name"].as_str().unwrap().to_owned(), check.clone()))
        .collect()
}

#[test]
fn doctor_checks_the_port_registry_state_hub_and_the_shim_when_configured() {
    require_tool("packer");
    // A port registry with a mistake, and a State Hub that accepts no connection.
    let registry = sandboxer_root_file("registry.toml");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sandboxer = Sandboxer::new()
        .env("SANDBOXER_PORT_REGISTRY", &registry.1)
        .env("STATE_HUB_URL", &url);
    std::fs::write(
        &registry.1,
        "[[vm]]\nname = \"build-01\"\nhost = \"10.0.0.5\"\nssh_port = \"twenty-two\"\n",
    )
    .unwrap();
    let dest = sandboxer.root().join("build-machines");
    std::fs::create_dir_all(&dest).unwrap();
    sandboxer
        .run(&["shim", "install", "--dest", dest.to_str().unwrap()])
        .success();

    let run = sandboxer.run(&["doctor", "--json", "--shim-dest", dest.to_str().unwrap()]);
    let checks = doctor_checks(&run.code(1));
    assert_eq!(checks["port-registry"]["status"], "fail", "{checks:#?}");
    assert!(
        checks["port-registry"]["detail"]
            .as_str()
            .unwrap()
            .contains("registry.toml:4:12"),
        "{checks:#?}"
    );
    assert_eq!(checks["state-hub"]["status"], "warn", "{checks:#?}");
    assert!(
        checks["state-hub"]["detail"]
            .as_str()
            .unwrap()
            .contains("does not accept connections"),
        "{checks:#?}"
    );
    assert_eq!(checks["shim"]["status"], "ok", "{checks:#?}");

    // A hand edit makes the shim check fail, naming the file.
    let script = dest.join("remote-build.sh");
    let mut text = std::fs::read_to_string(&script).unwrap();
    text.push_str("# local tweak\n");
    std::fs::write(&script, text).unwrap();
    std::fs::write(
        &registry.1,
        "[[vm]]\nname = \"build-01\"\nhost = \"10.0.0.5\"\nssh_port = 2201\n",
    )
    .unwrap();
    let checks = doctor_checks(
        &sandboxer
            .run(&["doctor", "--json", "--shim-dest", dest.to_str().unwrap()])
            .code(1),
    );
    assert_eq!(checks["port-registry"]["status"], "ok", "{checks:#?}");
    assert_eq!(checks["shim"]["status"], "fail", "{checks:#?}");
    assert!(
        checks["shim"]["detail"]
            .as_str()
            .unwrap()
            .contains("remote-build.sh edited by hand"),
        "{checks:#?}"
    );
}

/// A file in a fresh temporary directory: `(the directory, the file's path)`.
fn sandboxer_root_file(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}
