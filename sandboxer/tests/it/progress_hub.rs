//! Progress events and State Hub: the real `sandboxer` running the real `packer`, publishing to
//! a real HTTP server on loopback (`hub_server`) that is healthy, down, failing, throttling,
//! hanging, refusing the token or redirecting.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Run, Sandboxer, require_tool, signal};
use crate::hub_server::{HubServer, Reply, down_url};

/// A token distinctive enough to be searched for everywhere.
const TOKEN: &str = "tok-3f1b9c-never-written-anywhere";

/// A fresh sandboxer with the `project` (two post-processors, an artifact), `fail`, `gate` and
/// `sleep` templates in its cwd, sending to State Hub at `url` with [`TOKEN`].
fn with_hub(url: &str) -> Sandboxer {
    require_tool("packer");
    let sandboxer = Sandboxer::new()
        .env("STATE_HUB_URL", url)
        .env("STATE_HUB_TOKEN", TOKEN);
    for fixture in ["project", "fail", "gate", "sleep"] {
        sandboxer.fixture(fixture);
    }
    sandboxer
}

/// `create --profile vm-packer-build -i packer_template=templates/T/T.pkr.hcl -i vm_name=v ...`.
fn create_args(template: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        &format!("packer_template=templates/{template}/{template}.pkr.hcl"),
        "-i",
        "vm_name=v",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(more.iter().map(|arg| arg.to_string()));
    args
}

fn run_create(sandboxer: &Sandboxer, template: &str, more: &[&str]) -> Run {
    let args = create_args(template, more);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandboxer.run(&args)
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            event["type"]
                .as_str()
                .unwrap()
                .strip_prefix("dev.sandboxer.sandbox.")
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The events `--progress=jsonl` printed.
fn jsonl(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}\n{}", run.describe()))
        })
        .collect()
}

/// Every event of one sandbox, in order, exactly once each, numbered 1, 2, 3, ...
fn assert_complete_and_once(events: &[Value]) {
    let seqs: Vec<u64> = events
        .iter()
        .map(|event| event["data"]["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "{events:#?}");
}

/// Spooled (undelivered) events per sandbox, from `hub status --json`.
fn waiting(sandboxer: &Sandboxer) -> Value {
    sandboxer.run(&["hub", "status", "--json"]).success().json()["waiting"].clone()
}

/// The token is in no file under the state dir, and in none of the runs' output.
fn assert_token_nowhere(sandboxer: &Sandboxer, runs: &[&Run]) {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(TOKEN.len())
                .any(|window| window == TOKEN.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(sandboxer.state_dir(), &mut found);
    assert!(found.is_empty(), "the token was written to {found:?}");
    for run in runs {
        assert!(
            !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn a_successful_build_publishes_its_exact_events_to_state_hub_and_jsonl() {
    let hub = HubServer::healthy();
    let sandboxer = with_hub(&hub.url());
    let run = run_create(
        &sandboxer,
        "project",
        &[
            "--progress=jsonl",
            "-i",
            "state_hub_workstream=ws-7",
            "-i",
            "state_hub_task=task-42",
        ],
    )
    .success();

    let delivered = hub.delivered();
    assert_eq!(
        types(&delivered),
        [
            "created",
            "provisioning.started",
            "note",
            "step.started",
            "step.finished",
            "step.started",
            "step.finished",
            "artifact.produced",
            "finished",
        ]
    );
    assert_complete_and_once(&delivered);
    assert_eq!(
        jsonl(&run),
        delivered,
        "--progress=jsonl prints what State Hub receives"
    );

    let id = sandboxer.ids().pop().unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut previous = String::new();
    for event in &delivered {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["subject"], id.as_str());
        assert_eq!(event["source"], format!("sandboxer://{}", hostname.trim()));
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"]["sandbox"], id.as_str());
        assert_eq!(event["data"]["workstream"], "ws-7");
        assert_eq!(event["data"]["task"], "task-42");
        let event_id = event["id"].as_str().unwrap().to_owned();
        assert_eq!(&event_id[14..15], "7", "a UUID v7: {event_id}");
        assert!(event_id > previous, "ids are time-ordered");
        previous = event_id;
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
    }
    let steps: Vec<(&str, &str)> = delivered
        .iter()
        .filter(|event| event["type"] == "dev.sandboxer.sandbox.step.finished")
        .map(|event| {
            (
                event["data"]["name"].as_str().unwrap(),
                event["data"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [("shell-local", "succeeded"), ("artifice", "succeeded")]
    );
    let artifact = &delivered[7]["data"];
    assert!(artifact["path"].as_str().unwrap().ends_with("/v.ova"));
    assert_eq!(artifact["sha256"].as_str().unwrap().len(), 64);
    let finished = &delivered[8]["data"];
    assert_eq!(finished["state"], "ready");
    assert!(finished["duration_ms"].as_u64().is_some());

    for request in hub.requests() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/events");
        assert_eq!(
            request.header("content-type"),
            Some("application/cloudevents-batch+json")
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let last = request.events().last().unwrap()["id"].clone();
        assert_eq!(request.header("idempotency-key"), last.as_str());
    }
    assert_eq!(
        waiting(&sandboxer),
        Value::Array(Vec::new()),
        "nothing is spooled"
    );
    assert!(
        !sandboxer
            .state_dir()
            .join("hub/spool")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "a delivered spool is removed"
    );
    assert_token_nowhere(&sandboxer, &[&run]);
}

#[test]
fn a_failed_build_ends_with_the_failed_step_and_a_failed_finish() {
    let hub = HubServer::healthy();
    let sandboxer = with_hub(&hub.url());
    run_create(&sandboxer, "fail", &["-q"]).code(1);
    let delivered = hub.delivered();
    assert_eq!(
        types(&delivered),
        [
            "created",
            "provisioning.started",
            "note",
            "step.started",
            "step.finished",
            "finished"
        ]
    );
    assert_complete_and_once(&delivered);
    let step = &delivered[4]["data"];
    assert_eq!(step["step"], "provisioner");
    assert_eq!(step["outcome"], "failed");
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("non-zero exit status"),
        "{step}"
    );
    let finished = &delivered[5]["data"];
    assert_eq!(finished["state"], "failed");
    assert!(
        finished["reason"]
            .as_str()
            .unwrap()
            .contains("packer build failed"),
        "{finished}"
    );
}

#[test]
fn a_cancelled_build_still_delivers_its_final_event() {
    let hub = HubServer::healthy();
    let sandboxer = with_hub(&hub.url());
    let gate = sandboxer.root().join("gate-never-opens");
    let args = create_args("gate", &["-i", &format!("var.gate={}", gate.display())]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = sandboxer.start(&args);
    running.wait_for_stderr("build started");
    signal(running.id(), "INT");
    running.finish().code(130);
    let delivered = hub.delivered();
    let types = types(&delivered);
    assert_eq!(
        types.last().map(String::as_str),
        Some("finished"),
        "{types:?}"
    );
    assert_eq!(delivered.last().unwrap()["data"]["state"], "cancelled");
    assert!(types.contains(&"step.finished".to_owned()));
    let step = delivered
        .iter()
        .find(|event| event["type"] == "dev.sandboxer.sandbox.step.finished")
        .unwrap();
    assert_eq!(step["data"]["outcome"], "cancelled", "{step}");
    assert_complete_and_once(&delivered);
}

#[test]
fn with_state_hub_down_events_are_spooled_then_flushed_exactly_once_in_order() {
    let sandboxer = with_hub(&down_url());
    let started = Instant::now();
    let run = run_create(&sandboxer, "project", &["-q"]).success();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a dead State Hub does not hold the build up"
    );
    let id = sandboxer.ids().pop().unwrap();
    let spooled = waiting(&sandboxer);
    assert_eq!(spooled[0]["sandbox"], id.as_str(), "{spooled}");
    assert_eq!(spooled[0]["events"], 9, "{spooled}");
    let status = sandboxer.run(&["hub", "status", "--json"]).success().json();
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{status}"
    );
    assert!(
        run.stderr.contains("retrying in the background"),
        "{}",
        run.describe()
    );

    let hub = HubServer::healthy();
    let flushed = sandboxer
        .command(&["hub", "flush", "--json"])
        .env("STATE_HUB_URL", hub.url())
        .output()
        .unwrap();
    let flushed = Run::new(&["hub", "flush"], flushed).success();
    assert_eq!(flushed.json()[0]["delivered"], 9, "{}", flushed.describe());
    let delivered = hub.delivered();
    assert_complete_and_once(&delivered);
    assert_eq!(types(&delivered).last().unwrap(), "finished");
    assert_eq!(waiting(&sandboxer), Value::Array(Vec::new()));

    let again = sandboxer
        .command(&["hub", "flush"])
        .env("STATE_HUB_URL", hub.url())
        .output()
        .unwrap();
    let again = Run::new(&["hub", "flush"], again).success();
    assert!(
        again.stderr.contains("nothing waits"),
        "{}",
        again.describe()
    );
    assert_eq!(hub.delivered().len(), 9, "nothing is delivered twice");
    assert_token_nowhere(&sandboxer, &[&run, &flushed, &again]);
}

#[test]
fn after_500s_state_hub_recovers_and_gets_everything_once() {
    let hub = HubServer::start(|n, _| Reply::code(if n < 3 { 500 } else { 202 }));
    let sandboxer = with_hub(&hub.url());
    run_create(&sandboxer, "sleep", &["-q", "-i", "var.seconds=2"]).success();
    // Whatever the create could not deliver waits in the spool for the next flush.
    let flushed = sandboxer.command(&["hub", "flush"]).output().unwrap();
    Run::new(&["hub", "flush"], flushed).success();
    let requests = hub.requests();
    assert!(requests.len() > 3, "{requests:#?}");
    assert!(
        requests[..3]
            .iter()
            .all(|request| request.answered == Some(500))
    );
    let delivered = hub.delivered();
    assert_complete_and_once(&delivered);
    assert_eq!(types(&delivered).last().unwrap(), "finished");
}

#[test]
fn a_429_is_retried_no_sooner_than_retry_after() {
    let hub = HubServer::start(|n, _| {
        if n == 0 {
            Reply::with_header(429, "Retry-After", "1")
        } else {
            Reply::code(200)
        }
    });
    let sandboxer = with_hub(&hub.url());
    run_create(&sandboxer, "sleep", &["-q", "-i", "var.seconds=2"]).success();
    let requests = hub.requests();
    assert!(requests.len() >= 2, "{requests:#?}");
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before Retry-After"
    );
    assert_eq!(
        requests[1].events()[0],
        requests[0].events()[0],
        "the same batch again"
    );
    assert_complete_and_once(&hub.delivered());
}

/// Runs a one-second build against `hub` and returns how long create took after Packer's last
/// line, and the run.
fn time_after_packer(hub: &HubServer) -> (Duration, Sandboxer, Run) {
    let sandboxer = with_hub(&hub.url());
    let args = create_args("sleep", &["-i", "var.seconds=1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = sandboxer.start(&args);
    running.wait_for_stderr("Build 'null.sleep' finished");
    let packer_ended = Instant::now();
    let run = running.finish().success();
    (packer_ended.elapsed(), sandboxer, run)
}

#[test]
fn a_state_hub_that_never_answers_costs_at_most_two_seconds_after_packer() {
    let hub = HubServer::start(|_, _| Reply::Hang);
    let (after_packer, sandboxer, run) = time_after_packer(&hub);
    eprintln!("create returned {after_packer:?} after packer ended, State Hub hanging");
    assert!(
        after_packer < Duration::from_secs(2),
        "create returned {after_packer:?} after packer ended"
    );
    assert!(
        run.stderr.contains("not delivered in time"),
        "{}",
        run.describe()
    );
    let spooled = waiting(&sandboxer);
    assert!(spooled[0]["events"].as_u64().unwrap() >= 1, "{spooled}");
}

#[test]
fn a_state_hub_that_answers_late_costs_at_most_two_seconds_after_packer() {
    let hub =
        HubServer::start(|_, _| Reply::After(Duration::from_secs(4), Box::new(Reply::code(200))));
    let (after_packer, _, _) = time_after_packer(&hub);
    assert!(
        after_packer < Duration::from_secs(2),
        "create returned {after_packer:?} after packer ended"
    );
}

#[test]
fn a_401_is_reported_once_and_not_retried() {
    let hub = HubServer::start(|_, _| Reply::code(401));
    let sandboxer = with_hub(&hub.url());
    let run = run_create(&sandboxer, "sleep", &["-q", "-i", "var.seconds=1"]).success();
    assert_eq!(hub.requests().len(), 1, "{:#?}", hub.requests());
    let reports: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("401"))
        .collect();
    assert_eq!(reports.len(), 1, "{}", run.describe());
    assert!(reports[0].contains("State Hub is off for the rest of this run"));
    assert!(reports[0].contains("STATE_HUB_TOKEN"));
    let spooled = waiting(&sandboxer);
    assert!(
        spooled[0]["events"].as_u64().unwrap() >= 5,
        "kept for later: {spooled}"
    );
    let status = sandboxer.run(&["hub", "status"]).success();
    assert!(
        status.stdout.contains("401 Unauthorized"),
        "{}",
        status.describe()
    );
    assert_token_nowhere(&sandboxer, &[&run, &status]);
}

#[test]
fn a_redirect_is_not_followed() {
    let elsewhere = HubServer::healthy();
    let target = format!("{}/v1/events", elsewhere.url());
    let hub = HubServer::start(move |_, _| Reply::with_header(307, "Location", &target));
    let sandboxer = with_hub(&hub.url());
    let run = run_create(&sandboxer, "project", &["-q"]).success();
    assert_eq!(hub.requests().len(), 1);
    assert!(
        elsewhere.requests().is_empty(),
        "the token never followed the redirect"
    );
    assert!(
        run.stderr.contains("redirects are not followed"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_token_for_plain_http_beyond_loopback_is_refused_before_the_build() {
    require_tool("packer");
    let sandboxer = Sandboxer::new()
        .env("STATE_HUB_URL", "http://192.0.2.10:8080")
        .env("STATE_HUB_TOKEN", TOKEN);
    sandboxer.fixture("project");
    let run = run_create(&sandboxer, "project", &[])
        .code(2)
        .error_contains("refusing to send the State Hub token over plain http:// to 192.0.2.10");
    assert!(sandboxer.ids().is_empty(), "nothing was created");
    assert!(!run.stderr.contains(TOKEN));
}

#[test]
fn heartbeats_mark_a_silent_step() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    sandboxer.fixture("sleep");
    let run = run_create(
        &sandboxer,
        "sleep",
        &[
            "-q",
            "--progress=jsonl",
            "--heartbeat=1s",
            "-i",
            "var.seconds=3",
        ],
    )
    .success();
    let events = jsonl(&run);
    let beats: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "dev.sandboxer.sandbox.heartbeat")
        .collect();
    assert!(!beats.is_empty(), "{events:#?}");
    for beat in &beats {
        assert!(
            beat["data"]["step"]
                .as_str()
                .unwrap()
                .contains("Running local shell script"),
            "{beat}"
        );
        assert!(beat["data"]["silent_ms"].as_u64().unwrap() >= 1000);
    }
    assert_complete_and_once(&events);

    let quiet = run_create(
        &sandboxer,
        "sleep",
        &[
            "-q",
            "--progress=jsonl",
            "--heartbeat=0",
            "-i",
            "var.seconds=2",
        ],
    )
    .success();
    assert!(
        !types(&jsonl(&quiet)).contains(&"heartbeat".to_owned()),
        "--heartbeat=0 turns them off"
    );
}

#[test]
fn plain_progress_lines_are_timestamped_without_escape_codes() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    sandboxer.fixture("project");
    let run = run_create(&sandboxer, "project", &[]).success();
    let (progress, result) = run
        .stderr
        .split_once("\nsandbox ")
        .expect("the result follows the progress");
    assert!(!run.stderr.contains('\x1b'), "{}", run.describe());
    for line in progress.lines() {
        let stamp = line.get(..19).unwrap_or_default();
        let valid = jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S", stamp).is_ok()
            && line[19..].starts_with('Z');
        assert!(valid, "not timestamped: {line:?}");
    }
    assert!(
        progress.contains("Z sandboxer: provisioning on `local`"),
        "{progress}"
    );
    assert!(
        progress.contains("Z ==> null.project: Running post-processor"),
        "{progress}"
    );
    assert!(result.contains(" is ready"));
}

#[test]
fn events_spooled_by_one_create_go_with_the_next() {
    let sandboxer = with_hub(&down_url());
    run_create(&sandboxer, "project", &["-q"]).success();
    let first = sandboxer.ids().pop().unwrap();
    let hub = HubServer::healthy();
    let args = create_args("project", &["-q"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = sandboxer
        .command(&args)
        .env("STATE_HUB_URL", hub.url())
        .output()
        .unwrap();
    Run::new(&args, run).success();
    let of = |id: &str| -> Vec<Value> {
        hub.delivered()
            .into_iter()
            .filter(|event| event["subject"] == id)
            .collect()
    };
    let replayed = of(&first);
    assert_eq!(replayed.len(), 9);
    assert_complete_and_once(&replayed);
}
