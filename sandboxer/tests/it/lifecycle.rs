//! Lifecycle under pressure, with the real Packer and real signals: TTL and gc, placement
//! limits, cancellation, failure policy, crash recovery and concurrent use of one state dir.

use std::time::{Duration, Instant};

use crate::common::{
    KillGroupOnPanic, Run, Sandboxer, commands_in_group, finish_within, fixtures,
    processes_in_group, require_tool, signal, wait_until,
};

fn template(name: &str) -> String {
    fixtures()
        .join("templates")
        .join(name)
        .join(format!("{name}.pkr.hcl"))
        .display()
        .to_string()
}

/// A profile for the sleeping template on placement host `hv1`.
fn sleep_profile(max_concurrent: Option<u32>, seconds: u32) -> String {
    let limit = max_concurrent
        .map(|max| format!("max_concurrent = {max}\n"))
        .unwrap_or_default();
    format!(
        r#"id = "profile.sleep"
description = "a build that sleeps"
extension = "ext.vm-packer"
ttl = "1h"

[placement]
host = "hv1"
{limit}
[inputs]
mode = "build"
packer_template = "{}"
vm_name = "sleeper"
"var.seconds" = "{seconds}"
"#,
        template("sleep")
    )
}

fn quick_args(vm_name: &str) -> Vec<String> {
    [
        "create",
        "--profile",
        "vm-packer-build",
        "--quiet",
        "--json",
        "-i",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([
        format!("packer_template={}", template("quick")),
        "-i".to_owned(),
        format!("vm_name={vm_name}"),
    ])
    .collect()
}

fn setup() -> Sandboxer {
    require_tool("packer");
    require_tool("qemu-img");
    Sandboxer::new()
}

fn args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

/// Waits until the sleeping template's provisioner sleeps: it has said so (the log has the
/// line, so Packer is quiet from now on) and its `sleep` runs in Packer's group `pgid`.
fn wait_for_the_provisioner_to_sleep(sandboxer: &Sandboxer, id: &str, pgid: u32) {
    let log = sandboxer.sandbox_dir(id).join("provision.log");
    wait_until(
        Duration::from_secs(30),
        "the provisioner to start sleeping",
        || {
            let said_so = std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains("null.sleep: sleeping 300s"));
            let sleeps = commands_in_group(pgid).iter().any(|name| name == "sleep");
            (said_so && sleeps).then_some(())
        },
    );
}

#[test]
fn gc_expires_sandboxes_past_their_ttl_and_keeps_the_ova() {
    let sandboxer = setup();
    let created = sandboxer
        .run(&[
            "create",
            "--profile",
            "profile.vm-packer-build",
            "--ttl",
            "1s",
            "--json",
            "-q",
        ])
        .success()
        .json();
    let id = created["id"].as_str().unwrap().to_owned();
    let keeper = sandboxer
        .run(&[
            "create",
            "--profile",
            "profile.vm-packer-build",
            "-i",
            "vm_name=keeper",
            "-q",
        ])
        .success();
    let keeper_id = keeper.stdout.trim().to_owned();

    wait_until(Duration::from_secs(5), "the TTL to pass", || {
        let expired = sandboxer
            .run(&["list", "--expired", "--json"])
            .success()
            .json();
        (expired.as_array().unwrap().len() == 1).then_some(())
    });
    let expired = sandboxer
        .run(&["list", "--expired", "--json"])
        .success()
        .json();
    assert_eq!(expired[0]["id"], id.as_str());

    let dry = sandboxer
        .run(&["gc", "--dry-run", "--json"])
        .success()
        .json();
    assert_eq!(
        dry,
        serde_json::json!([{"id": id, "action": "expire", "outcome": "planned", "detail": dry[0]["detail"]}])
    );
    assert_eq!(
        sandboxer.show(&id)["state"],
        "ready",
        "a dry run changes nothing"
    );

    let done = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(done.as_array().unwrap().len(), 1);
    let record = sandboxer.show(&id);
    assert_eq!(record["state"], "expired");
    let ova = record["artifacts"][0]["path"].as_str().unwrap();
    assert!(
        ova.starts_with(
            &sandboxer
                .state_dir()
                .join("artifacts")
                .join(&id)
                .display()
                .to_string()
        ),
        "{ova}"
    );
    assert!(std::path::Path::new(ova).is_file(), "the OVA survives gc");
    assert_eq!(
        sandboxer.show(&keeper_id)["state"],
        "ready",
        "gc leaves live sandboxes alone"
    );
    assert_eq!(
        sandboxer
            .run(&["list", "--expired", "--json"])
            .success()
            .json(),
        serde_json::json!([])
    );
    sandboxer
        .run(&["gc"])
        .success()
        .stderr_contains("nothing to collect");
}

#[test]
fn gc_never_reaps_a_sandbox_mid_build_but_does_once_it_finishes() {
    let sandboxer = setup();
    sandboxer.write_profile("sleep.toml", &sleep_profile(None, 3));
    let build = sandboxer.spawn(&["create", "--profile", "sleep", "--ttl", "1s", "-q"]);
    let id = sandboxer.wait_for_state("provisioning");
    std::thread::sleep(Duration::from_millis(1100));
    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(actions[0]["action"], "skip-provisioning", "{actions}");
    Run::from_child(&["create"], build).success();
    assert_eq!(sandboxer.show(&id)["state"], "ready");
    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(actions[0]["action"], "expire", "{actions}");
    assert_eq!(sandboxer.show(&id)["state"], "expired");
}

#[test]
fn extend_pushes_the_expiry_and_never_shortens_it() {
    let sandboxer = setup();
    let created = sandboxer.run(&args(&quick_args("ext"))).success().json();
    let id = created["id"].as_str().unwrap();
    let before: jiff::Timestamp = created["expires_at"].as_str().unwrap().parse().unwrap();

    let extended = sandboxer
        .run(&["extend", id, "--ttl", "30d", "--json"])
        .success()
        .json();
    let after: jiff::Timestamp = extended["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        after.duration_since(before).as_secs() > 29 * 86400,
        "{before} -> {after}"
    );

    let unchanged = sandboxer
        .run(&["extend", id, "--ttl", "1m", "--json"])
        .success()
        .json();
    assert_eq!(unchanged["expires_at"], extended["expires_at"]);

    sandboxer.run(&["teardown", id]).success();
    sandboxer
        .run(&["extend", id, "--ttl", "1h"])
        .code(1)
        .stderr_contains("torn-down");
    sandboxer.run(&["extend", "sb-nope", "--ttl", "1h"]).code(3);
}

#[test]
fn placement_limit_queues_or_refuses_and_passes_the_host_to_the_template() {
    let sandboxer = setup();
    sandboxer.write_profile("sleep.toml", &sleep_profile(Some(1), 2));
    let first = sandboxer.spawn(&["create", "--profile", "sleep"]);
    let first_id = sandboxer.wait_for_state("provisioning");

    let refused = sandboxer
        .run(&["create", "--profile", "sleep", "--no-wait", "--json"])
        .code(4);
    assert_eq!(refused.json()["error"], "placement-full");
    assert!(
        refused.stderr.contains("`hv1` is full"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        sandboxer.ids(),
        std::slice::from_ref(&first_id),
        "a refused create records nothing"
    );

    // Only the first build needs to take its time.
    let queued = sandboxer.spawn(&[
        "create",
        "--profile",
        "sleep",
        "--json",
        "-i",
        "var.seconds=0",
    ]);
    let first = Run::from_child(&["create"], first).success();
    assert!(
        first.stderr.contains("placement_host=hv1"),
        "{}",
        first.stderr
    );
    let queued = Run::from_child(&["create"], queued).success();
    assert!(
        queued
            .stderr
            .contains("waiting for a free placement slot on `hv1` (next in line)"),
        "{}",
        queued.stderr
    );
    assert_eq!(
        queued.json()["placement"],
        serde_json::json!({"host": "hv1", "slot": 0})
    );
}

/// The visible tickets in host `hv1`'s queue (a hidden one is still being taken).
fn queue_tickets(sandboxer: &Sandboxer) -> Vec<String> {
    let queue = sandboxer.state_dir().join("slots/hv1/queue");
    let mut tickets: Vec<String> = std::fs::read_dir(queue)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    tickets.sort();
    tickets
}

#[test]
fn a_killed_waiter_does_not_leak_its_place_or_a_slot() {
    let sandboxer = setup();
    sandboxer.write_profile("sleep.toml", &sleep_profile(Some(1), 300));
    let holder = sandboxer.spawn(&["create", "--profile", "sleep", "-q"]);
    let holder_id = sandboxer.wait_for_state("provisioning");
    let mut waiter = sandboxer.start(&["create", "--profile", "sleep"]);
    waiter.wait_for_stderr("waiting for a free placement slot on `hv1` (next in line)");
    let tickets = queue_tickets(&sandboxer);
    assert_eq!(tickets.len(), 1, "the waiter holds a ticket: {tickets:?}");
    // SIGKILL: the waiter cannot remove its ticket; only its lock goes with it.
    signal(waiter.id(), "KILL");
    waiter.finish();
    assert_eq!(
        queue_tickets(&sandboxer),
        tickets,
        "a killed waiter leaves its ticket file behind"
    );

    signal(holder.id(), "INT");
    Run::from_child(&["create"], holder).code(130);
    assert_eq!(sandboxer.show(&holder_id)["state"], "cancelled");
    // The dead waiter's ticket neither blocks a create that will not wait ...
    sandboxer.write_profile("sleep.toml", &sleep_profile(Some(1), 0));
    sandboxer
        .run(&["create", "--profile", "sleep", "--no-wait", "-q"])
        .success();
    // ... nor stays.
    assert_eq!(
        queue_tickets(&sandboxer),
        Vec::<String>::new(),
        "the dead waiter's ticket is gone"
    );
}

/// Starts a long build, cancels it with `sig`, and checks the exit code, the record and that no
/// process of Packer's group survives.
fn cancel_with(sig: &str, expected_code: i32, name: &str) {
    let sandboxer = setup();
    sandboxer.write_profile("sleep.toml", &sleep_profile(None, 300));
    let build = sandboxer.spawn(&["create", "--profile", "sleep", "--json"]);
    let id = sandboxer.wait_for_state("provisioning");
    let pgid = sandboxer.wait_for_pgid(&id);
    let _guard = KillGroupOnPanic(pgid);
    wait_for_the_provisioner_to_sleep(&sandboxer, &id, pgid);

    signal(build.id(), sig);
    let run = Run::from_child(&["create"], build).code(expected_code);
    assert!(
        run.stderr.contains(&format!("cancelled by {name}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["exit_code"], expected_code);
    assert_eq!(
        processes_in_group(pgid),
        Vec::<u32>::new(),
        "no Packer process survives the cancel"
    );
    let record = sandboxer.show(&id);
    assert_eq!(record["state"], "cancelled");
    assert!(
        record["state_reason"].as_str().unwrap().contains(name),
        "{record}"
    );
    let log = std::fs::read_to_string(record["log"].as_str().unwrap()).unwrap();
    // The log is kept. (What Packer itself says of the cancel varies with timing:
    // "Cleanly cancelled builds", or, when the interrupt reaches the provisioner's script
    // first, a killed script; the contract is the exit code, the record and an empty group.)
    assert!(log.contains("# sandboxer: running"), "{log}");
}

#[test]
fn sigint_cancels_the_build_and_exits_130() {
    cancel_with("INT", 130, "SIGINT");
}

#[test]
fn sigterm_cancels_the_build_and_exits_143() {
    cancel_with("TERM", 143, "SIGTERM");
}

/// How long a cancel of the stubborn fake may take: generous for a loaded machine, and far
/// below the fake's own lifetime (300 s), so that only sandboxer's kill can end it in time.
const STUBBORN_LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_packer_that_ignores_the_cancel_is_killed_after_the_timeout() {
    let (sandboxer, build, id, pgid) = start_stubborn_build("1s");
    let cancelled_at = Instant::now();
    signal(build.id(), "INT");
    finish_within(&["create"], build, STUBBORN_LIMIT, pgid).code(130);
    let took = cancelled_at.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "killed before the 1 s --cancel-timeout passed: {took:?}"
    );
    assert_eq!(processes_in_group(pgid), Vec::<u32>::new());
    assert_eq!(sandboxer.show(&id)["state"], "cancelled");
}

#[test]
fn a_second_ctrl_c_kills_a_stubborn_build_at_once() {
    let (sandboxer, build, id, pgid) = start_stubborn_build("10m");
    signal(build.id(), "INT");
    // The first request is ignored by this Packer; only the second can end the wait.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !processes_in_group(pgid).is_empty(),
        "the first Ctrl-C waits for Packer"
    );
    signal(build.id(), "INT");
    finish_within(&["create"], build, STUBBORN_LIMIT, pgid).code(130);
    assert_eq!(processes_in_group(pgid), Vec::<u32>::new());
    assert_eq!(sandboxer.show(&id)["state"], "cancelled");
}

/// Starts a build with a FAKE Packer that ignores SIGINT, waiting until it runs.
fn start_stubborn_build(cancel_timeout: &str) -> (Sandboxer, std::process::Child, String, u32) {
    let fake = fixtures().join("fakes/fake-packer-ignores-sigint");
    let sandboxer = setup().env("SANDBOXER_PACKER", &fake);
    let quick = format!("packer_template={}", template("quick"));
    let build = sandboxer.spawn(&[
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        &quick,
        "--cancel-timeout",
        cancel_timeout,
    ]);
    let id = sandboxer.wait_for_state("provisioning");
    let pgid = sandboxer.wait_for_pgid(&id);
    wait_until(
        Duration::from_secs(10),
        "the fake to start sleeping",
        || (processes_in_group(pgid).len() >= 2).then_some(()),
    );
    (sandboxer, build, id, pgid)
}

#[test]
fn a_kept_failure_is_reaped_by_gc_at_its_ttl() {
    let sandboxer = setup();
    let fail = format!(
        "packer_template={}",
        fixtures().join("templates/fail/fail.pkr.hcl").display()
    );
    let options = ["--on-failure", "keep", "--ttl", "1s", "-q"];
    let mut args = vec!["create", "--profile", "vm-packer-build", "-i", &fail];
    args.extend(options);
    sandboxer.run(&args).code(1);
    let id = sandboxer.ids().pop().unwrap();
    let output = sandboxer
        .state_dir()
        .join("sandboxes")
        .join(&id)
        .join("output");
    assert!(output.is_dir(), "kept for debugging");
    std::thread::sleep(Duration::from_millis(1100));
    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(actions[0]["action"], "expire", "{actions}");
    assert_eq!(sandboxer.show(&id)["state"], "expired");
    assert!(!output.exists(), "gc removes what the failure kept");
}

#[test]
fn on_failure_keep_leaves_working_files_and_cleanup_removes_them() {
    let sandboxer = setup();
    let fail = format!(
        "packer_template={}",
        fixtures().join("templates/fail/fail.pkr.hcl").display()
    );
    for (policy, kept) in [("keep", true), ("cleanup", false)] {
        let run = sandboxer
            .run(&[
                "create",
                "--profile",
                "vm-packer-build",
                "-i",
                &fail,
                "--on-failure",
                policy,
                "--json",
                "-q",
            ])
            .code(1);
        assert_eq!(run.json()["error"], "failed");
        let id = sandboxer.ids().pop().unwrap();
        let dir = sandboxer.state_dir().join("sandboxes").join(&id);
        assert!(
            !dir.join("work").exists(),
            "{policy}: Packer's TMPDIR never outlives the run"
        );
        assert_eq!(dir.join("output").exists(), kept, "{policy}: output/");
        assert!(
            dir.join("provision.log").is_file(),
            "{policy}: the log is always kept"
        );
        let log = std::fs::read_to_string(dir.join("provision.log")).unwrap();
        let flag = if kept {
            "-on-error=abort"
        } else {
            "-on-error=cleanup"
        };
        assert!(log.contains(flag), "{policy}: {log}");
        assert_eq!(sandboxer.show(&id)["state"], "failed");
    }
}

fn assert_orphaned(record: &serde_json::Value) {
    assert_eq!(record["state"], "failed", "{record}");
    let reason = record["state_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("orphaned"), "{record}");
}

/// Starts a long build and SIGKILLs its sandboxer once the provisioner runs, leaving the
/// build orphaned: returns the harness, the sandbox id and the build's process group (killed
/// if the test fails).
fn orphan_a_long_build() -> (Sandboxer, String, u32, KillGroupOnPanic) {
    let sandboxer = setup();
    sandboxer.write_profile("sleep.toml", &sleep_profile(None, 300));
    let mut build = sandboxer.spawn(&["create", "--profile", "sleep", "-q"]);
    let id = sandboxer.wait_for_state("provisioning");
    let pgid = sandboxer.wait_for_pgid(&id);
    wait_for_the_provisioner_to_sleep(&sandboxer, &id, pgid);
    build.kill().unwrap(); // SIGKILL: no chance to clean up
    build.wait().unwrap();
    assert_eq!(
        sandboxer.stored_record(&id)["owner"]["pgid"],
        pgid,
        "the dead sandboxer's record still names the running build"
    );
    (sandboxer, id, pgid, KillGroupOnPanic(pgid))
}

#[test]
fn a_killed_sandboxer_leaves_an_orphan_that_list_reports_and_teardown_stops() {
    let (sandboxer, id, pgid, _guard) = orphan_a_long_build();

    let listed = sandboxer.run(&["list", "--json"]).success().json();
    assert_orphaned(&listed[0]);
    assert!(
        !processes_in_group(pgid).is_empty(),
        "listing does not touch the orphaned build"
    );

    let torn = sandboxer.run(&["teardown", &id, "--json"]).success().json();
    assert_eq!(torn["state"], "torn-down");
    assert_eq!(
        processes_in_group(pgid),
        Vec::<u32>::new(),
        "teardown stops the orphaned build"
    );
    sandboxer
        .run(&["teardown", &id])
        .success()
        .stderr_contains("already torn-down");
}

#[test]
fn teardown_stops_an_orphan_nobody_has_listed_yet() {
    let (sandboxer, id, pgid, _guard) = orphan_a_long_build();
    assert_eq!(
        sandboxer.stored_record(&id)["state"],
        "provisioning",
        "not reconciled yet"
    );
    let torn = sandboxer.run(&["teardown", &id, "--json"]).success().json();
    assert_eq!(torn["state"], "torn-down");
    assert_eq!(
        processes_in_group(pgid),
        Vec::<u32>::new(),
        "teardown stops the orphaned build"
    );
}

#[test]
fn gc_stops_an_orphaned_build_before_its_ttl() {
    let (sandboxer, id, pgid, _guard) = orphan_a_long_build();
    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(actions[0]["action"], "stop-orphaned-build", "{actions}");
    assert_eq!(processes_in_group(pgid), Vec::<u32>::new());
    assert_eq!(
        sandboxer.show(&id)["state"],
        "failed",
        "still there until its TTL"
    );
}

#[test]
fn thirty_two_concurrent_creates_get_distinct_ids_and_records() {
    let sandboxer = setup();
    let children: Vec<_> = (0..32)
        .map(|n| {
            let owned = quick_args(&format!("vm{n}"));
            sandboxer.spawn(&args(&owned))
        })
        .collect();
    let mut ids = Vec::new();
    for child in children {
        let record = Run::from_child(&["create"], child).success().json();
        assert_eq!(record["state"], "ready");
        ids.push(record["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 32);
    ids.reverse(); // `list` shows the newest first
    let listed = sandboxer.run(&["list", "--json"]).success();
    assert!(listed.stderr.is_empty(), "{}", listed.stderr);
    let listed: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
}

#[test]
fn teardown_and_gc_racing_end_with_one_teardown() {
    // Each round races in a state dir of its own (so its gc sees only its sandbox), and one
    // wait lets every round's TTL pass.
    let rounds: Vec<(Sandboxer, String)> = (0..4)
        .map(|round| {
            let sandboxer = setup();
            let owned = quick_args(&format!("race{round}"));
            let mut create = args(&owned);
            create.extend(["--ttl", "1s"]);
            let id = sandboxer.run(&create).success().json()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            (sandboxer, id)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1050));
    for (sandboxer, id) in &rounds {
        let teardown = sandboxer.spawn(&["teardown", id]);
        let gc = sandboxer.spawn(&["gc", "--json"]);
        let teardown = Run::from_child(&["teardown"], teardown).success();
        let gc = Run::from_child(&["gc"], gc).success();
        let state = sandboxer.show(id)["state"].clone();
        let gc_expired = gc
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|action| action["id"] == id.as_str() && action["outcome"] == "done");
        if gc_expired {
            assert_eq!(state, "expired");
            assert!(
                teardown.stderr.contains("already expired"),
                "{}",
                teardown.stderr
            );
        } else {
            assert_eq!(state, "torn-down");
            assert!(teardown.stderr.contains("torn down"), "{}", teardown.stderr);
        }
    }
}

#[test]
fn a_create_killed_at_any_moment_leaves_only_readable_records() {
    let sandboxer = setup();
    // Killed mid-allocation, for certain: strace SIGKILLs the create as it publishes its staged
    // directory (record and lock already inside) with the one renameat2 a create makes.
    require_tool("strace");
    let owned = quick_args("staged");
    let status = sandboxer
        .command_under(
            &[
                "strace",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=renameat2",
                "-e",
                "inject=renameat2:signal=SIGKILL:when=1",
            ],
            &args(&owned),
        )
        .status()
        .unwrap();
    assert!(!status.success(), "strace killed the create: {status}");
    let staged: Vec<String> = sandboxer
        .sandbox_entries()
        .into_iter()
        .filter(|name| name.starts_with(".new-"))
        .collect();
    assert_eq!(staged.len(), 1, "one stale allocation: {staged:?}");
    assert!(
        sandboxer
            .state_dir()
            .join("sandboxes")
            .join(&staged[0])
            .join("record.json")
            .is_file(),
        "killed after staging its record"
    );
    let listed = sandboxer.run(&["list", "--json"]).success();
    assert_eq!(listed.json(), serde_json::json!([]), "never published");
    let dry = sandboxer
        .run(&["gc", "--dry-run", "--json"])
        .success()
        .json();
    assert_eq!(dry[0]["id"], staged[0].as_str(), "{dry}");
    assert_eq!(dry[0]["action"], "remove-stale-allocation", "{dry}");

    // Killed at moments spread over a whole create.
    for delay_ms in [0u64, 5, 15, 30, 60, 120, 250, 400] {
        let owned = quick_args(&format!("k{delay_ms}"));
        let mut child = sandboxer.spawn(&args(&owned));
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let listed = sandboxer.run(&["list", "--json"]).success();
    assert!(
        listed.stderr.is_empty(),
        "every record is readable: {}",
        listed.stderr
    );
    for record in listed.json().as_array().unwrap() {
        let state = record["state"].as_str().unwrap();
        assert!(["ready", "failed"].contains(&state), "{record}");
        if state == "failed" {
            assert_orphaned(record);
        }
    }
    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert!(
        actions.as_array().unwrap().iter().any(|action| {
            action["id"] == staged[0].as_str() && action["action"] == "remove-stale-allocation"
        }),
        "{actions}"
    );
    let staging: Vec<_> = sandboxer
        .sandbox_entries()
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        staging.is_empty(),
        "gc removes half-made allocations: {staging:?}"
    );
}
