//! Attach mode against a real OpenSSH server on loopback (`sshd`): verification and its
//! failures, the port registry, `sandboxer ssh`, detaching, and one live sandbox per VM.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Run, Sandboxer, signal};
use crate::sshd::{Sshd, free_port, keygen};

/// `create --profile vm-attach` for `vm_name` at the server, logging in with its test key.
fn attach_args(sshd: &Sshd, vm_name: &str) -> Vec<String> {
    let mut args = vec!["create", "--profile", "vm-attach", "--quiet", "--json"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    for input in [
        format!("vm_name={vm_name}"),
        "host=127.0.0.1".to_owned(),
        format!("ssh_port={}", sshd.port()),
        format!("ssh_user={}", sshd.user),
        format!("ssh_identity={}", sshd.client_key.display()),
    ] {
        args.push("-i".to_owned());
        args.push(input);
    }
    args
}

fn args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

/// Attaches `vm_name` and returns the ready record.
fn attach(sandboxer: &Sandboxer, sshd: &Sshd, vm_name: &str) -> Value {
    let record = sandboxer
        .run(&args(&attach_args(sshd, vm_name)))
        .success()
        .json();
    assert_eq!(record["state"], "ready", "{record:#}");
    record
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("an id").to_owned()
}

/// A failed attach: exit 1, the error names the sandbox and says `message`, the record is
/// `failed` with the same reason, and no SSH details were recorded.
fn assert_attach_failed(sandboxer: &Sandboxer, run: Run, message: &str) -> Value {
    let run = run.code(1).error_contains(message);
    let id = sandboxer
        .ids()
        .pop()
        .expect("the failed sandbox is recorded");
    run.error_contains(&format!("sandbox {id} failed: cannot attach vm"));
    let record = sandboxer.show(&id);
    assert_eq!(record["state"], "failed", "{record:#}");
    // The reason is cut at 300 characters; its start is enough to tell the failures apart.
    let reason = record["state_reason"].as_str().unwrap();
    let start: String = message.chars().take(60).collect();
    assert!(reason.contains(&start), "{reason}");
    assert!(record.get("ssh").is_none(), "{record:#}");
    record
}

#[test]
fn attach_by_host_and_port_logs_in_and_records_how_to_reach_the_vm() {
    let sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    // A state dir with a space: sandboxer's known_hosts path must survive ssh's option parsing.
    let state = sandboxer.root().join("state dir");
    let sandboxer = sandboxer.with_state_dir(state.clone());
    let record = attach(&sandboxer, &sshd, "web");
    assert_eq!(record["mode"], "attach");
    assert_eq!(record["ssh"]["host"], "127.0.0.1");
    assert_eq!(record["ssh"]["port"], sshd.port());
    assert_eq!(record["ssh"]["user"], sshd.user.as_str());
    assert_eq!(
        record["ssh"]["identity"],
        sshd.client_key.to_str().unwrap(),
        "the key's path, as given"
    );
    assert_eq!(record["inputs"]["connect_timeout"], "10s");

    // First sight recorded the host key, under the host and port, in sandboxer's own file.
    let known_hosts = std::fs::read_to_string(state.join("ssh/known_hosts")).unwrap();
    assert_eq!(
        known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), sshd.host_public_key())
    );

    // The record and the log hold the key's path, never the key.
    let id = id_of(&record);
    let private_key = std::fs::read_to_string(&sshd.client_key).unwrap();
    let key_body = private_key.lines().nth(1).unwrap();
    let log = std::fs::read_to_string(sandboxer.sandbox_dir(&id).join("provision.log")).unwrap();
    let stored = std::fs::read_to_string(sandboxer.sandbox_dir(&id).join("record.json")).unwrap();
    for (what, text) in [("log", &log), ("record", &stored)] {
        assert!(!text.contains(key_body), "the {what} holds the private key");
    }
    assert!(log.contains("speaks SSH: SSH-2.0-OpenSSH"), "{log}");
    assert!(log.contains("logged in"), "{log}");

    sandboxer
        .run(&["show", &id])
        .success()
        .stdout_contains(&format!(
            "ssh:        {}@127.0.0.1:{} (key {})",
            sshd.user,
            sshd.port(),
            sshd.client_key.display()
        ));
}

#[test]
fn attach_finds_the_vm_in_the_port_registry() {
    let sshd = Sshd::start();
    let registry = format!(
        r#"# the-custodian's port registry
[[vm]]
name = "haskell-build-web"
host = "127.0.0.1"
ssh_port = {port}
forwarded_ports = [
  {{ port = 8081, guest_port = 80, purpose = "web preview" }},
]

[[vm]]
name = "haskell-build-api"
host = "127.0.0.1"
ssh_port = 1
"#,
        port = sshd.port()
    );
    let sandboxer = Sandboxer::new().env("SANDBOXER_PORT_REGISTRY", "ports.toml");
    std::fs::write(sandboxer.cwd().join("ports.toml"), &registry).unwrap();
    let login = [
        "-i".to_owned(),
        format!("ssh_user={}", sshd.user),
        "-i".to_owned(),
        format!("ssh_identity={}", sshd.client_key.display()),
    ];
    let mut by_name: Vec<String> = ["create", "--profile", "vm-attach", "--json", "--quiet"]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    by_name.extend(login.iter().cloned());

    let mut web = by_name.clone();
    web.extend(["-i".to_owned(), "vm_name=haskell-build-web".to_owned()]);
    let record = sandboxer.run(&args(&web)).success().json();
    assert_eq!(record["ssh"]["host"], "127.0.0.1");
    assert_eq!(record["ssh"]["port"], sshd.port());
    assert_eq!(
        record["forwarded_ports"],
        serde_json::json!([{"port": 8081, "guest_port": 80, "purpose": "web preview"}])
    );
    assert!(record["inputs"].get("host").is_none(), "{record:#}");
    sandboxer
        .run(&["show", record["id"].as_str().unwrap()])
        .success()
        .stdout_contains("forwarded:  port 8081 -> guest port 80: web preview");

    // A name the registry lacks: not found, naming the file and its closest names.
    let mut typo = by_name.clone();
    typo.extend(["-i".to_owned(), "vm_name=haskel-build-web".to_owned()]);
    let run = sandboxer.run(&args(&typo)).code(3);
    assert_eq!(
        run.error_message(),
        "error: vm `haskel-build-web` is not in the port registry ports.toml; closest names there: `haskell-build-web`, `haskell-build-api` (or give the VM's address with --input host=HOST)\n"
    );

    // A profile's `port_registry` beats the environment's; `ssh_port` beats the registry's.
    std::fs::write(
        sandboxer.cwd().join("team-ports.toml"),
        registry.replace("haskell-build-web", "team-web"),
    )
    .unwrap();
    sandboxer.write_profile(
        "team.toml",
        "id = \"profile.team-attach\"\ndescription = \"d\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n\n[inputs]\nport_registry = \"team-ports.toml\"\nvm_name = \"team-web\"\n",
    );
    let mut team: Vec<String> = ["create", "--profile", "team-attach", "--json", "--quiet"]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    team.extend(login.iter().cloned());
    let record = sandboxer.run(&args(&team)).success().json();
    assert_eq!(record["ssh"]["port"], sshd.port());
    team.extend([
        "-i".to_owned(),
        "ssh_port=1".to_owned(),
        "--force".to_owned(),
    ]);
    assert_attach_failed(
        &sandboxer,
        sandboxer.run(&args(&team)),
        "nothing is listening on 127.0.0.1:1 (connection refused)",
    );
}

#[test]
fn sandboxer_ssh_passes_stdio_exit_codes_and_hostile_arguments_through() {
    let sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    let id = id_of(&attach(&sandboxer, &sshd, "web"));

    let run = sandboxer.run(&["ssh", &id, "--", "echo", "hello", "world"]);
    let run = run.success();
    assert_eq!(run.stdout, "hello world\n");

    let run = sandboxer.run(&["ssh", &id, "--", "sh", "-c", "echo oops >&2; exit 7"]);
    let run = run.code(7);
    assert_eq!(run.stderr, "oops\n");

    // Every word arrives as it is: nothing is expanded, split, globbed or run by the remote
    // shell, which would otherwise create the marker.
    let marker = sandboxer.root().join("pwned");
    let marker = marker.to_str().unwrap();
    let hostile = [
        format!("$(touch {marker})"),
        format!("`touch {marker}`"),
        format!("; touch {marker}"),
        format!("&& touch {marker} #"),
        format!(">{marker}"),
        "it's \"quoted\"".to_owned(),
        "*".to_owned(),
        "two  spaces".to_owned(),
        String::new(),
        "$HOME".to_owned(),
        "\\".to_owned(),
        "line\nbreak".to_owned(),
        "FOO=bar".to_owned(),
    ];
    let mut argv = vec!["ssh", &id, "--", "printf", "[%s]\\n"];
    argv.extend(hostile.iter().map(String::as_str));
    let run = sandboxer.run(&argv).success();
    let expected: String = hostile.iter().map(|word| format!("[{word}]\n")).collect();
    assert_eq!(run.stdout, expected);
    assert!(
        !std::path::Path::new(marker).exists(),
        "the remote shell ran part of an argument"
    );

    // Stdin reaches the remote command; without a command, a login shell reads it.
    for (remote, input, output) in [
        (
            &["--", "cat"][..],
            "line one\nline two\n",
            "line one\nline two\n",
        ),
        (&[][..], "echo from-the-shell\n", "from-the-shell\n"),
    ] {
        let mut full = vec!["ssh", id.as_str()];
        full.extend(remote);
        let mut child = sandboxer
            .command(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let run = Run::from_child(&full, child).success();
        assert_eq!(run.stdout, output, "{}", run.describe());
    }
}

/// `create --profile vm-attach` of vm `web` at 127.0.0.1:`port`, plus `extra` arguments.
fn attach_port_args(port: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "create",
        "--profile",
        "vm-attach",
        "-i",
        "vm_name=web",
        "-i",
        "host=127.0.0.1",
        "-i",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.push(format!("ssh_port={port}"));
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

#[test]
fn nothing_listening_is_reported_as_such() {
    let sandboxer = Sandboxer::new();
    let port = free_port().to_string();
    let run = sandboxer.run(&args(&attach_port_args(&port, &[])));
    assert_attach_failed(
        &sandboxer,
        run,
        &format!("nothing is listening on 127.0.0.1:{port} (connection refused)"),
    );
    assert!(
        !sandboxer.state_dir().join("ssh/known_hosts").exists(),
        "no key was seen, none recorded"
    );
}

/// A TCP server on loopback that answers every connection with `greeting` and hangs up.
fn greeting_server(greeting: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(greeting.as_bytes());
        }
    });
    port
}

#[test]
fn a_server_that_is_not_ssh_is_reported_as_such() {
    let port = greeting_server("220 mail.example.org ESMTP ready\r\n").to_string();
    let sandboxer = Sandboxer::new();
    let run = sandboxer.run(&args(&attach_port_args(&port, &[])));
    assert_attach_failed(
        &sandboxer,
        run,
        &format!(
            "127.0.0.1:{port} is not an SSH server: it said \"220 mail.example.org ESMTP ready\" instead of an SSH banner"
        ),
    );
}

#[test]
fn a_listener_that_never_speaks_times_out_within_connect_timeout() {
    // Bound and listening, never accepting: the kernel completes the handshake, nobody speaks.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let sandboxer = Sandboxer::new();
    let started = Instant::now();
    let run = sandboxer.run(&args(&attach_port_args(
        &port,
        &["-i", "connect_timeout=1s"],
    )));
    let took = started.elapsed();
    assert_attach_failed(
        &sandboxer,
        run,
        &format!(
            "timed out: 127.0.0.1:{port} accepted the connection but sent no SSH banner within 1s"
        ),
    );
    assert!(took >= Duration::from_secs(1), "gave up early: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "ignored connect_timeout: {took:?}"
    );
    drop(listener);
}

#[test]
fn ctrl_c_cancels_an_attach_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let sandboxer = Sandboxer::new();
    let mut running = sandboxer.start(&args(&attach_port_args(
        &port,
        &["-i", "connect_timeout=60s"],
    )));
    running.wait_for_stderr("attaching vm `web`");
    let asked = Instant::now();
    signal(running.id(), "INT");
    let run = running.finish().code(130);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the cancel waited for connect_timeout: {:?}",
        asked.elapsed()
    );
    run.error_contains("cancelled by SIGINT while probing 127.0.0.1:");
    let id = sandboxer.ids().pop().unwrap();
    assert_eq!(sandboxer.show(&id)["state"], "cancelled");
    drop(listener);
}

#[test]
fn a_key_the_server_does_not_accept_is_refused() {
    let sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    let wrong_key = sandboxer.root().join("wrong").join("id_ed25519");
    keygen(&wrong_key);
    let mut argv = attach_args(&sshd, "web");
    *argv.last_mut().unwrap() = format!("ssh_identity={}", wrong_key.display());
    assert_attach_failed(
        &sandboxer,
        sandboxer.run(&args(&argv)),
        &format!(
            "authentication refused: 127.0.0.1:{} did not accept the login as {} with key {} ({}@127.0.0.1: Permission denied (publickey).)",
            sshd.port(),
            sshd.user,
            wrong_key.display(),
            sshd.user
        ),
    );
}

#[test]
fn a_changed_host_key_is_refused() {
    let mut sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    let first = id_of(&attach(&sandboxer, &sshd, "web"));
    let known_hosts = sandboxer.state_dir().join("ssh/known_hosts");
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();

    sshd.restart_with_new_host_key();
    let run = sandboxer.run(&args(&attach_args(&sshd, "web-again")));
    assert_attach_failed(
        &sandboxer,
        run,
        &format!(
            "host key changed: 127.0.0.1:{port} presented a different host key from the one sandboxer recorded in {known_hosts}; refusing to connect (if the machine was rebuilt and the new key is expected, forget the old one with `'ssh-keygen' '-f' '{known_hosts}' '-R' '[127.0.0.1]:{port}'` and try again)",
            port = sshd.port(),
            known_hosts = known_hosts.display()
        ),
    );
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        recorded,
        "the old key stays; the new one is not accepted"
    );

    // `sandboxer ssh` to the sandbox attached before the change is refused by ssh (255).
    let run = sandboxer
        .run(&["ssh", &first, "--", "echo", "hello"])
        .code(255);
    assert!(run.stdout.is_empty(), "{}", run.describe());
    assert!(
        run.stderr
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        run.describe()
    );
}

#[test]
fn teardown_and_gc_only_detach_and_leave_the_vm_running() {
    let mut sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    let torn = id_of(&attach(&sandboxer, &sshd, "web"));
    sandboxer
        .run(&["teardown", &torn])
        .success()
        .stderr_contains(&format!("sandbox {torn} detached"));
    assert_eq!(sandboxer.show(&torn)["state"], "torn-down");
    assert!(sshd.is_running(), "teardown stopped the VM's sshd");
    assert!(sshd.login_works(), "the VM is not reachable after teardown");
    let run = sandboxer.run(&["ssh", &torn, "--", "true"]).code(1);
    run.error_contains(&format!(
        "sandbox {torn} is torn-down; only a ready sandbox can be reached"
    ));

    let mut short = attach_args(&sshd, "web");
    short.extend(["--ttl".to_owned(), "1s".to_owned()]);
    let expiring = id_of(&sandboxer.run(&args(&short)).success().json());
    std::thread::sleep(Duration::from_millis(1100));
    let report = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(
        report,
        serde_json::json!([{
            "id": expiring, "action": "expire", "outcome": "done",
            "detail": report[0]["detail"],
        }])
    );
    assert_eq!(sandboxer.show(&expiring)["state"], "expired");
    assert!(sshd.is_running(), "gc stopped the VM's sshd");
    assert!(sshd.login_works(), "the VM is not reachable after gc");
    // Detached, the VM can be attached again.
    attach(&sandboxer, &sshd, "web");
}

#[test]
fn no_mode_means_attach() {
    let sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    sandboxer.write_profile(
        "mine.toml",
        &format!(
            "id = \"profile.mine\"\ndescription = \"names no mode\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n\n[inputs]\nvm_name = \"web\"\nhost = \"127.0.0.1\"\nssh_port = {}\n",
            sshd.port()
        ),
    );
    let record = sandboxer
        .run(&["create", "--profile", "mine", "--json", "--quiet"])
        .success()
        .json();
    assert_eq!(record["mode"], "attach");
    assert_eq!(record["inputs"]["mode"], "attach");
    assert_eq!(record["ssh"]["port"], sshd.port());
    let profiles = sandboxer
        .run(&["profiles", "list", "--json"])
        .success()
        .json();
    let mine = profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|profile| profile["id"] == "profile.mine")
        .unwrap();
    assert_eq!(mine["mode"], "attach");
}

#[test]
fn a_live_vm_is_attached_once_unless_forced() {
    let sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    // A failed attach holds nothing.
    let port = free_port().to_string();
    sandboxer.run(&args(&attach_port_args(&port, &[]))).code(1);
    let first = id_of(&attach(&sandboxer, &sshd, "web"));
    let run = sandboxer.run(&args(&attach_args(&sshd, "web"))).code(1);
    run.error_contains(&format!(
        "vm `web` is already held by live sandbox {first} (ready); tear it down first (`sandboxer teardown {first}`), or pass --force to create another"
    ));
    assert_eq!(sandboxer.ids().len(), 2, "a refused attach records nothing");
    // Another VM is another matter.
    attach(&sandboxer, &sshd, "api");

    let mut forced = attach_args(&sshd, "web");
    forced.push("--force".to_owned());
    let second = id_of(&sandboxer.run(&args(&forced)).success().json());
    let run = sandboxer.run(&args(&attach_args(&sshd, "web"))).code(1);
    run.error_contains(&format!(
        "held by live sandbox {first} (ready), {second} (ready);"
    ));

    sandboxer.run(&["teardown", &first, &second]).success();
    attach(&sandboxer, &sshd, "web");
}

#[test]
fn concurrent_attaches_of_one_vm_admit_exactly_one() {
    let sshd = Sshd::start();
    let sandboxer = Sandboxer::new();
    let argv = attach_args(&sshd, "web");
    let children: Vec<_> = (0..4).map(|_| sandboxer.spawn(&args(&argv))).collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|child| Run::from_child(&args(&argv), child))
        .collect();
    let ready: Vec<&Run> = runs.iter().filter(|run| run.code == Some(0)).collect();
    assert_eq!(
        ready.len(),
        1,
        "{}",
        runs.iter()
            .map(Run::describe)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let winner = id_of(&ready[0].json());
    for run in runs.iter().filter(|run| run.code != Some(0)) {
        assert_eq!(run.code, Some(1), "{}", run.describe());
        assert!(
            run.stderr
                .contains(&format!("held by live sandbox {winner}")),
            "{}",
            run.describe()
        );
    }
}
