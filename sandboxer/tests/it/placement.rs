//! Placement limits with real builds that the test holds open (the `gate` fixture): the queue
//! is first come, first served, `--no-wait` never jumps it, `max_concurrent` above 1 allows
//! exactly that many provisions at once, and a waiter can be cancelled.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{Running, Sandboxer, fixtures, require_tool, signal, wait_until};

/// How long any one step may take on a loaded machine; the gates hold builds for up to 5 min.
const LIMIT: Duration = Duration::from_secs(30);

/// A sandboxer whose `profile.gated` builds the `gate` fixture on placement host `hv1`, at
/// most `max_concurrent` at once.
fn gated_host(max_concurrent: u32) -> Sandboxer {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = fixtures().join("templates/gate/gate.pkr.hcl");
    sandboxer.write_profile(
        "gated.toml",
        &format!(
            r#"id = "profile.gated"
description = "a build that waits until the test opens its gate"
extension = "ext.vm-packer"
ttl = "1h"

[placement]
host = "hv1"
max_concurrent = {max_concurrent}

[inputs]
mode = "build"
packer_template = "{}"
vm_name = "gated"
"#,
            template.display()
        ),
    );
    sandboxer
}

/// One create of `profile.gated`, started, with the file that lets its build finish.
struct Gated {
    running: Running,
    gate: PathBuf,
}

impl Gated {
    /// Starts a create whose build waits for the file `gate-NAME`.
    fn start(sandboxer: &Sandboxer, name: &str) -> Gated {
        let gate = sandboxer.root().join(format!("gate-{name}"));
        let gate_input = format!("var.gate={}", gate.display());
        let running =
            sandboxer.start(&["create", "--profile", "gated", "--json", "-i", &gate_input]);
        Gated { running, gate }
    }

    /// Waits until the build runs (it has a slot), failing if the create queues instead.
    fn builds_at_once(&mut self) {
        let seen = self
            .running
            .wait_for_stderr_any(&["build started", "waiting for"]);
        assert_eq!(
            seen,
            0,
            "expected to build at once, but it queued:\n{}",
            self.running.stderr_so_far()
        );
    }

    /// Waits until the create reports `place` in the queue, failing if it builds instead.
    fn wait_until_queued_at(&mut self, place: usize) {
        let said = if place == 1 {
            "(next in line)".to_owned()
        } else {
            format!("place {place} in the queue")
        };
        let seen = self.running.wait_for_stderr_any(&[&said, "build started"]);
        assert_eq!(
            seen,
            0,
            "expected to wait at place {place}:\n{}",
            self.running.stderr_so_far()
        );
    }

    /// Waits until the build of a create that was queued runs.
    fn builds_now(&mut self) {
        self.running.wait_for_stderr("build started");
    }

    fn open(&self) {
        std::fs::write(&self.gate, "").unwrap();
    }

    /// Opens the gate and waits for the create to succeed; returns its record.
    fn finish(self) -> serde_json::Value {
        self.open();
        self.running.finish_within(LIMIT).success().json()
    }
}

/// Sandbox ids in creation order (ids sort by creation time).
fn ids_in_order(sandboxer: &Sandboxer, count: usize) -> Vec<String> {
    wait_until(LIMIT, "every create to record its sandbox", || {
        let ids = sandboxer.ids();
        (ids.len() == count).then_some(ids)
    })
}

/// The state of each sandbox, as stored.
fn states(sandboxer: &Sandboxer, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            sandboxer.stored_record(id)["state"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Waits until exactly the sandboxes at `building` are provisioning and the rest pending.
fn wait_for_states(sandboxer: &Sandboxer, ids: &[String], building: &[usize]) {
    let want: Vec<&str> = (0..ids.len())
        .map(|at| {
            if building.contains(&at) {
                "provisioning"
            } else {
                "pending"
            }
        })
        .collect();
    wait_until(LIMIT, &format!("states {want:?}"), || {
        let now = states(sandboxer, ids);
        // A waiter that got the slot out of turn shows as provisioning too early: fail at once.
        for (at, state) in now.iter().enumerate() {
            assert!(
                state != "provisioning" || building.contains(&at),
                "sandbox {at} provisions out of turn: {now:?}"
            );
        }
        (now == want).then_some(())
    });
}

/// How long a waiter that would take a free slot out of turn gets to do it: several of its
/// polls (every 100 ms).
const OUT_OF_TURN_CHANCE: Duration = Duration::from_millis(500);

#[test]
fn waiters_are_served_first_come_first_served() {
    let sandboxer = gated_host(1);
    let mut holder = Gated::start(&sandboxer, "holder");
    holder.builds_at_once();
    let mut waiters = Vec::new();
    for (at, name) in ["first", "second", "third"].into_iter().enumerate() {
        let mut waiter = Gated::start(&sandboxer, name);
        waiter.wait_until_queued_at(at + 1);
        waiters.push(waiter);
    }
    let ids = ids_in_order(&sandboxer, 4);
    wait_for_states(&sandboxer, &ids, &[0]);

    let mut building = holder;
    for (at, mut waiter) in waiters.into_iter().enumerate() {
        // The head of the line is frozen when the slot frees: whoever is behind it polls first,
        // and must leave the slot to it all the same.
        signal(waiter.running.id(), "STOP");
        let record = building.finish();
        assert_eq!(record["placement"]["slot"], 0, "{record:#}");
        std::thread::sleep(OUT_OF_TURN_CHANCE);
        let waiting = &ids[at + 1..];
        let now = states(&sandboxer, waiting);
        assert!(
            now.iter().all(|state| state == "pending"),
            "a waiter took the slot out of turn: {now:?}"
        );
        signal(waiter.running.id(), "CONT");
        wait_for_states(&sandboxer, waiting, &[0]);
        waiter.builds_now();
        building = waiter;
    }
    let record = building.finish();
    assert_eq!(record["placement"]["slot"], 0, "{record:#}");
}

#[test]
fn no_wait_is_refused_while_others_wait_even_with_a_slot_free() {
    let sandboxer = gated_host(1);
    let mut holder = Gated::start(&sandboxer, "holder");
    holder.builds_at_once();
    let mut waiter = Gated::start(&sandboxer, "waiter");
    waiter.wait_until_queued_at(1);
    // Freeze the waiter in line, then free the slot: it is free, but it is the waiter's.
    signal(waiter.running.id(), "STOP");
    holder.finish();
    // Would build and succeed at once if it jumped the queue.
    let open_gate = sandboxer.root().join("gate-open");
    std::fs::write(&open_gate, "").unwrap();
    let open_gate = format!("var.gate={}", open_gate.display());
    let no_wait = [
        "create",
        "--profile",
        "gated",
        "--no-wait",
        "--json",
        "-i",
        &open_gate,
    ];
    let refused = sandboxer.run(&no_wait).code(4);
    signal(waiter.running.id(), "CONT");
    assert_eq!(
        refused.json()["error"],
        "placement-full",
        "{}",
        refused.describe()
    );
    refused.error_contains("`hv1` has 1 waiting in line before you");
    assert_eq!(sandboxer.ids().len(), 2, "a refused create records nothing");

    waiter.builds_now();
    waiter.finish();
}

#[test]
fn max_concurrent_above_one_runs_that_many_at_once_and_no_more() {
    let sandboxer = gated_host(2);
    let mut first = Gated::start(&sandboxer, "first");
    first.builds_at_once();
    let mut second = Gated::start(&sandboxer, "second");
    second.builds_at_once();
    let mut third = Gated::start(&sandboxer, "third");
    third.wait_until_queued_at(1);
    let ids = ids_in_order(&sandboxer, 3);
    wait_for_states(&sandboxer, &ids, &[0, 1]);

    let first = first.finish();
    wait_for_states(&sandboxer, &ids[1..], &[0, 1]);
    third.builds_now();
    let (second, third) = (second.finish(), third.finish());
    let slots = [&first, &second, &third].map(|record| record["placement"]["slot"].clone());
    assert_ne!(
        slots[0], slots[1],
        "two builds at once hold two slots: {slots:?}"
    );
    assert_eq!(
        slots[2], slots[0],
        "the third takes the slot the first freed: {slots:?}"
    );
}

#[test]
fn sigint_while_queued_cancels_the_create_and_gives_back_its_place() {
    let sandboxer = gated_host(1);
    let mut holder = Gated::start(&sandboxer, "holder");
    holder.builds_at_once();
    let mut waiter = Gated::start(&sandboxer, "waiter");
    waiter.wait_until_queued_at(1);
    let queue = sandboxer.state_dir().join("slots/hv1/queue");
    let tickets = || std::fs::read_dir(&queue).unwrap().count();
    assert_eq!(tickets(), 1, "the waiter holds a ticket");

    signal(waiter.running.id(), "INT");
    let run = waiter.running.finish_within(LIMIT).code(130);
    assert_eq!(run.json()["error"], "interrupted", "{}", run.describe());
    let ids = sandboxer.ids();
    let record = sandboxer.show(&ids[1]);
    assert_eq!(record["state"], "cancelled", "{record:#}");
    let reason = record["state_reason"].as_str().unwrap();
    assert!(
        reason.contains("SIGINT while waiting for a placement slot"),
        "{reason}"
    );
    assert_eq!(tickets(), 0, "the cancelled waiter removed its ticket");
    assert_eq!(sandboxer.stored_record(&ids[0])["state"], "provisioning");

    let record = holder.finish();
    assert_eq!(record["state"], "ready", "the holder is not disturbed");
}
