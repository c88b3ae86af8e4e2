//! History and retention: `list` of live and ended sandboxes with filters, `artifacts list` and
//! `artifacts prune`, gc's purge after the retention period, and a prune killed at random
//! points. Records are made through the library (`Registry::create`, `lifecycle::teardown`), as
//! sandboxer's own create and teardown leave them; the commands run as the real binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use jiff::{SignedDuration, Timestamp};
use sandboxer::lifecycle::Config;
use sandboxer::record::{Artifact, Placement, Record, SCHEMA_VERSION, State};
use sandboxer::registry::Registry;
use serde_json::Value;

use crate::common::Sandboxer;

/// A sandbox to make through the library.
#[derive(Clone)]
struct Spec {
    state: State,
    profile: &'static str,
    mode: &'static str,
    /// How long ago it was created.
    age: SignedDuration,
    /// Bytes of an OVA it built (kept on teardown), if any.
    ova: Option<usize>,
    /// A failure that kept its working files.
    holds_files: bool,
}

impl Spec {
    fn new(state: State) -> Spec {
        Spec {
            state,
            profile: "profile.vm-packer-build",
            mode: "build",
            age: SignedDuration::from_hours(1),
            ova: None,
            holds_files: false,
        }
    }

    fn profile(mut self, profile: &'static str) -> Spec {
        self.profile = profile;
        self
    }

    fn mode(mut self, mode: &'static str) -> Spec {
        self.mode = mode;
        self
    }

    fn age(mut self, age: SignedDuration) -> Spec {
        self.age = age;
        self
    }

    fn ova(mut self, bytes: usize) -> Spec {
        self.ova = Some(bytes);
        self
    }

    fn holding_files(mut self) -> Spec {
        self.holds_files = true;
        self
    }
}

/// The library's view of a test's state dir.
struct Library {
    config: Config,
    /// Owner locks of sandboxes made in progress, held as a live sandboxer would.
    held: std::cell::RefCell<Vec<sandboxer::registry::SandboxLock>>,
}

impl Library {
    fn new(sandboxer: &Sandboxer) -> Library {
        let state = Utf8Path::from_path(sandboxer.state_dir()).unwrap();
        let registry = Registry::open(state).unwrap();
        let cwd = Utf8PathBuf::from_path_buf(sandboxer.cwd().to_owned()).unwrap();
        Library {
            config: Config {
                env: sandboxer::ext::Environment {
                    cwd,
                    cache_dir: registry.cache_dir(),
                    packer: None,
                    cancel_timeout: Duration::from_secs(30),
                    verbose: false,
                    known_hosts: registry.known_hosts(),
                    port_registry: None,
                    heartbeat: None,
                },
                registry,
                search: sandboxer::profile::SearchPath::default(),
                hub: sandboxer::hub::Settings::default(),
                retention: sandboxer::history::DEFAULT_RETENTION,
                pool_file: None,
            },
            held: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn registry(&self) -> &Registry {
        &self.config.registry
    }

    /// Makes one sandbox as create and teardown would leave it: torn-down and expired ones are
    /// torn down through the library (so an OVA moves to `artifacts/<id>/` beside its
    /// provenance), then dated back.
    fn make(&self, spec: &Spec) -> String {
        // Ids order by the millisecond of creation and a random tail breaks ties: a sandbox
        // made in the same millisecond as the previous one could list before it.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let registry = self.registry();
        let created_at = Timestamp::now() - spec.age;
        let ends_torn_down = spec.state.is_gone();
        let (record, lock) = registry
            .create(|id| {
                let dirs = registry.dirs(id);
                let artifacts = spec
                    .ova
                    .map(|bytes| Artifact {
                        path: dirs.output.join(format!("{id}.ova")),
                        bytes: bytes as u64,
                        sha256: sha256(&ova_bytes(id, bytes)),
                        build: None,
                    })
                    .into_iter()
                    .collect();
                Record {
                    schema_version: SCHEMA_VERSION,
                    id: id.to_owned(),
                    profile: spec.profile.to_owned(),
                    profile_source: "built-in (profiles/profile.vm-packer-build.toml)".to_owned(),
                    extension: "ext.vm-packer".to_owned(),
                    mode: spec.mode.to_owned(),
                    state: if ends_torn_down {
                        State::Ready
                    } else {
                        spec.state
                    },
                    state_reason: None,
                    created_at,
                    updated_at: created_at,
                    expires_at: created_at + SignedDuration::from_hours(24 * 365),
                    inputs: BTreeMap::from([(
                        "vm_name".to_owned(),
                        sandboxer::inputs::Value::Single(id.to_owned()),
                    )]),
                    placement: Placement {
                        host: "local".to_owned(),
                        slot: None,
                    },
                    owner: None,
                    artifacts,
                    builds: Vec::new(),
                    log: None,
                    claim: None,
                    ssh: None,
                    forwarded_ports: Vec::new(),
                    torn_down_at: None,
                    retention: None,
                    pruned_artifacts: Vec::new(),
                    build_host: None,
                    provenance: None,
                    like: None,
                }
            })
            .unwrap();
        let id = record.id;
        let dirs = registry.dirs(&id);
        if let Some(bytes) = spec.ova {
            std::fs::create_dir_all(&dirs.output).unwrap();
            std::fs::write(dirs.output.join(format!("{id}.ova")), ova_bytes(&id, bytes)).unwrap();
        }
        if spec.holds_files {
            std::fs::create_dir_all(&dirs.output).unwrap();
        }
        if spec.state.is_in_progress() {
            self.held.borrow_mut().push(lock);
        } else {
            drop(lock);
        }
        if ends_torn_down {
            sandboxer::lifecycle::teardown(&self.config, &id).unwrap();
            let state = spec.state;
            registry
                .update(&id, |record| {
                    record.state = state;
                    record.torn_down_at = Some(created_at + SignedDuration::from_mins(30));
                })
                .unwrap();
        }
        id
    }

    /// Moves a torn-down sandbox's teardown `ago` into the past.
    fn torn_down_ago(&self, id: &str, ago: SignedDuration) {
        self.registry()
            .update(id, |record| {
                record.torn_down_at = Some(Timestamp::now() - ago);
            })
            .unwrap();
    }
}

/// An OVA's contents: distinct per sandbox, so hashes differ.
fn ova_bytes(id: &str, bytes: usize) -> Vec<u8> {
    id.bytes().cycle().take(bytes).collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn ids_of(json: &Value) -> Vec<String> {
    json.as_array()
        .expect("an array of records")
        .iter()
        .map(|record| record["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Ids in the first column of a `list` table.
fn ids_in_table(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect()
}

fn strings(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn newest_first(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.reverse();
    ids
}

#[test]
fn list_shows_live_sandboxes_newest_first_and_filters_combine() {
    let sandboxer = Sandboxer::new();
    let library = Library::new(&sandboxer);
    let hours = SignedDuration::from_hours;
    let ready = library.make(&Spec::new(State::Ready).age(hours(50)));
    let torn_down = library.make(&Spec::new(State::TornDown).age(hours(40)));
    let kept_failure = library.make(&Spec::new(State::Failed).holding_files().age(hours(30)));
    let bare_failure = library.make(&Spec::new(State::Failed).age(hours(20)));
    let cancelled = library.make(&Spec::new(State::Cancelled).age(hours(10)));
    let expired = library.make(&Spec::new(State::Expired).age(hours(5)));
    let other_ready = library.make(
        &Spec::new(State::Ready)
            .profile("profile.team-x")
            .mode("attach")
            .age(hours(2)),
    );
    let pending = library.make(&Spec::new(State::Pending).age(hours(1)));

    let list = |args: &[&str]| -> Vec<String> {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let json = ids_of(&sandboxer.run(&with_json).success().json());
        // The table shows the same sandboxes in the same order: --json honours every filter.
        let table = sandboxer.run(args).success();
        assert_eq!(ids_in_table(&table.stdout), json, "{}", table.describe());
        json
    };

    // Live by default: pending, ready, a failure still holding its files.
    assert_eq!(
        list(&["list"]),
        strings(&[&pending, &other_ready, &kept_failure, &ready])
    );
    let everything = newest_first(sandboxer.ids());
    assert_eq!(list(&["list", "--all"]), everything);
    assert_eq!(list(&["list", "-a"]), everything, "stable across runs");
    // Naming a state looks at ended sandboxes too.
    assert_eq!(
        list(&["list", "--state", "failed"]),
        strings(&[&bare_failure, &kept_failure])
    );
    assert_eq!(
        list(&["list", "--state", "torn-down,expired"]),
        strings(&[&expired, &torn_down])
    );
    assert_eq!(
        list(&["list", "--state", "cancelled", "--state", "pending"]),
        strings(&[&pending, &cancelled])
    );
    // Filters combine: a sandbox must match each.
    assert_eq!(
        list(&["list", "--profile", "team-x"]),
        strings(&[&other_ready])
    );
    assert_eq!(
        list(&["list", "--profile", "profile.team-x", "--mode", "build"]),
        Vec::<String>::new()
    );
    assert_eq!(
        list(&["list", "--all", "--mode", "build", "--since", "12h"]),
        strings(&[&pending, &expired, &cancelled])
    );
    assert_eq!(
        list(&["list", "--since", "25h", "--state", "failed"]),
        strings(&[&bare_failure])
    );
    let a_day_ago = (Timestamp::now() - hours(24)).to_string();
    assert_eq!(
        list(&["list", "--all", "--since", &a_day_ago]),
        strings(&[&pending, &other_ready, &expired, &cancelled, &bare_failure])
    );

    sandboxer
        .run(&["list", "--profile", "nobody"])
        .success()
        .stderr_contains("no sandboxes that match");
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates_newest_first() {
    let sandboxer = Sandboxer::new();
    let library = Library::new(&sandboxer);
    let older = library.make(&Spec::new(State::TornDown));
    let newer = library.make(&Spec::new(State::Ready));
    let common: String = older
        .chars()
        .zip(newer.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    let run = sandboxer.run(&["show", &common]).code(2);
    let message = run.error_message();
    assert!(
        message.starts_with(&format!(
            "error: `{common}` matches 2 sandboxes; give more of the id:\n  {newer}  ready "
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("\n  {older}  torn-down  ")),
        "{message}"
    );
}

/// Issue 13: `list` of the live sandboxes among 10,000 ended ones, and gc purging at scale.
#[test]
fn ten_thousand_ended_records_list_only_the_live_ones_and_gc_purges_the_old() {
    let sandboxer = Sandboxer::new();
    let state = Utf8PathBuf::from_path_buf(sandboxer.state_dir().to_owned()).unwrap();
    let registry = Registry::open(&state).unwrap();
    let now = Timestamp::now();
    const ENDED: usize = 10_000;
    const LIVE: usize = 100;
    const DUE: usize = 1_000;
    // Made on four threads: each record is fsynced, and the file system batches the syncs of
    // concurrent writers.
    let started = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let registry = registry.clone();
            scope.spawn(move || {
                for index in (worker..ENDED + LIVE).step_by(4) {
                    let (state, torn_down_at) = match index {
                        _ if index >= ENDED => (State::Ready, None),
                        // The oldest DUE were torn down 40 days ago: past the default 30.
                        _ if index < DUE => (State::TornDown, Some(now - days(40))),
                        _ if index % 2 == 0 => (State::Expired, Some(now - days(2))),
                        _ => (State::TornDown, Some(now - days(1))),
                    };
                    let created_at = torn_down_at.unwrap_or(now) - SignedDuration::from_hours(1);
                    registry
                        .create(|id| bulk_record(id, state, created_at, torn_down_at))
                        .unwrap();
                }
            });
        }
    });
    eprintln!("made {} records in {:?}", ENDED + LIVE, started.elapsed());

    let live = sandboxer.run(&["list", "--json"]).success().json();
    let live = live.as_array().unwrap();
    assert_eq!(live.len(), LIVE);
    assert!(live.iter().all(|record| record["state"] == "ready"));
    let ids: Vec<&str> = live.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let table = sandboxer.run(&["list"]).success();
    assert_eq!(table.stdout.lines().count(), LIVE + 1);
    let all = sandboxer.run(&["list", "--all", "--json"]).success().json();
    assert_eq!(all.as_array().unwrap().len(), ENDED + LIVE);

    let planned = sandboxer
        .run(&["gc", "--dry-run", "--json"])
        .success()
        .json();
    let planned = planned.as_array().unwrap();
    assert_eq!(planned.len(), DUE, "only those torn down over 30 days ago");
    assert!(
        planned
            .iter()
            .all(|entry| entry["action"] == "purge" && entry["outcome"] == "planned")
    );
    let started = Instant::now();
    let done = sandboxer.run(&["gc", "--json"]).success().json();
    eprintln!("gc purged {DUE} records in {:?}", started.elapsed());
    assert_eq!(done.as_array().unwrap().len(), DUE);
    assert!(
        done.as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "done")
    );
    assert_eq!(sandboxer.ids().len(), ENDED + LIVE - DUE);
    assert!(
        sandboxer
            .sandbox_entries()
            .iter()
            .all(|name| !name.starts_with('.')),
        "no purge leftovers"
    );
    assert_eq!(
        sandboxer.run(&["list", "--json"]).success().json(),
        Value::Array(live.clone())
    );
    let again = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(again, Value::Array(Vec::new()), "nothing left to purge");
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn bulk_record(
    id: &str,
    state: State,
    created_at: Timestamp,
    torn_down_at: Option<Timestamp>,
) -> Record {
    Record {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned(),
        profile: "profile.vm-packer-build".to_owned(),
        profile_source: "built-in (profiles/profile.vm-packer-build.toml)".to_owned(),
        extension: "ext.vm-packer".to_owned(),
        mode: "build".to_owned(),
        state,
        state_reason: None,
        created_at,
        updated_at: torn_down_at.unwrap_or(created_at),
        expires_at: Timestamp::now() + SignedDuration::from_hours(12),
        inputs: BTreeMap::from([(
            "vm_name".to_owned(),
            sandboxer::inputs::Value::Single("bulk".to_owned()),
        )]),
        placement: Placement {
            host: "local".to_owned(),
            slot: None,
        },
        owner: None,
        artifacts: Vec::new(),
        builds: Vec::new(),
        log: None,
        claim: None,
        ssh: None,
        forwarded_ports: Vec::new(),
        torn_down_at,
        retention: None,
        pruned_artifacts: Vec::new(),
        build_host: None,
        provenance: None,
        like: None,
    }
}

/// Kept artifact files under `artifacts/`, relative to the state dir.
fn kept_files(state: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let root = state.join("artifacts");
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let path = file.unwrap().path();
            files.insert(
                path.strip_prefix(state)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    files
}

#[test]
fn artifacts_list_and_prune_by_count_age_and_size_never_touching_a_live_sandbox() {
    let sandboxer = Sandboxer::new();
    let library = Library::new(&sandboxer);
    let mib = 1 << 20;
    // Oldest first: three of profile A, two of profile B, then a live A.
    let a1 = library.make(&Spec::new(State::TornDown).ova(mib).age(days(40)));
    let a2 = library.make(&Spec::new(State::Expired).ova(mib).age(days(20)));
    let b1 = library.make(
        &Spec::new(State::TornDown)
            .profile("profile.b")
            .ova(2 * mib)
            .age(days(15)),
    );
    let a3 = library.make(&Spec::new(State::TornDown).ova(mib).age(days(10)));
    let b2 = library.make(
        &Spec::new(State::TornDown)
            .profile("profile.b")
            .ova(2 * mib)
            .age(days(5)),
    );
    let live = library.make(&Spec::new(State::Ready).ova(3 * mib).age(days(1)));

    let listed = sandboxer
        .run(&["artifacts", "list", "--json"])
        .success()
        .json();
    let sandboxes: Vec<&str> = listed["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kept| kept["sandbox"].as_str().unwrap())
        .collect();
    assert_eq!(sandboxes, [&live, &b2, &a3, &b1, &a2, &a1], "newest first");
    assert_eq!(listed["total_bytes"], 10 * mib);
    assert_eq!(listed["live_bytes"], 3 * mib);
    let state = sandboxer.state_dir();
    for id in [&a1, &a2, &a3, &b1, &b2] {
        let provenance = state.join("artifacts").join(id).join("provenance.json");
        let document: Value = serde_json::from_slice(&std::fs::read(&provenance).unwrap()).unwrap();
        assert_eq!(document["format"], "sandboxer-provenance/1");
        assert_eq!(document["sandbox"]["id"], id.as_str());
        assert_eq!(
            document["artifacts"][0]["sha256"],
            sha256(&ova_bytes(
                id,
                if id == &b1 || id == &b2 { 2 * mib } else { mib }
            ))
        );
    }
    let table = sandboxer.run(&["artifacts", "list"]).success();
    assert!(
        table.stdout.lines().next().unwrap().starts_with("SANDBOX")
            && table.stdout.contains(&format!("artifacts/{a1}/{a1}.ova"))
            && table.stdout.contains("1.0 MiB")
            && table.stdout.contains(
                "total: 10.0 MiB in 6 artifact(s) (3.0 MiB of it live sandboxes', never pruned)"
            ),
        "{}",
        table.describe()
    );

    // A dry run says what would go and deletes nothing.
    let before = kept_files(state);
    let dry = sandboxer
        .run(&["artifacts", "prune", "--keep-last", "1", "--dry-run"])
        .success();
    assert!(
        dry.stderr.contains(&format!(
            "would prune {}",
            state
                .join("artifacts")
                .join(&a2)
                .join(format!("{a2}.ova"))
                .display()
        )) && dry
            .stderr
            .contains("would free 5.0 MiB (4 artifact(s)); 5.0 MiB would stay"),
        "{}",
        dry.describe()
    );
    assert_eq!(kept_files(state), before);

    // --keep-last 1 per profile: the live sandbox is profile A's newest, so A keeps only it;
    // B keeps b2.
    let report = sandboxer
        .run(&["artifacts", "prune", "--keep-last", "1", "--json"])
        .success()
        .json();
    let pruned: BTreeSet<&str> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            assert_eq!(entry["outcome"], "done");
            assert_eq!(entry["reason"], "--keep-last 1");
            entry["sandbox"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        pruned,
        BTreeSet::from([a1.as_str(), a2.as_str(), a3.as_str(), b1.as_str()])
    );
    assert_eq!(report["freed_bytes"], 5 * mib);
    assert_eq!(report["kept_bytes"], 5 * mib);
    // The directories of pruned artifacts are gone; the record keeps the hash as history.
    assert_eq!(
        kept_files(state),
        BTreeSet::from([
            format!("artifacts/{b2}/{b2}.ova"),
            format!("artifacts/{b2}/provenance.json"),
        ])
    );
    let record = sandboxer.show(&a1);
    assert_eq!(record["artifacts"], Value::Array(Vec::new()));
    assert_eq!(
        record["pruned_artifacts"][0]["sha256"],
        sha256(&ova_bytes(&a1, mib))
    );
    assert_eq!(record["pruned_artifacts"][0]["reason"], "--keep-last 1");
    assert!(
        sandboxer
            .sandbox_dir(&live)
            .join("output")
            .join(format!("{live}.ova"))
            .exists()
    );

    // --max-total below what the live sandbox alone takes: b2 goes, and it says why it stops.
    let run = sandboxer
        .run(&["artifacts", "prune", "--max-total", "1M"])
        .success();
    assert!(
        run.stderr.contains(&format!("pruned {}", state.join("artifacts").join(&b2).join(format!("{b2}.ova")).display()))
            && run.stderr.contains("freed 2.0 MiB (1 artifact(s)); 3.0 MiB kept")
            && run.stderr.contains("note: 3.0 MiB still kept, more than --max-total 1.0 MiB: the rest belongs to live sandboxes"),
        "{}",
        run.describe()
    );
    assert!(kept_files(state).is_empty());
    sandboxer
        .run(&["artifacts", "prune", "--older-than", "1d"])
        .success()
        .stderr_contains("nothing to prune; 3.0 MiB kept");
}

#[test]
fn older_than_and_max_total_prune_oldest_first_and_keep_last_protects() {
    let sandboxer = Sandboxer::new();
    let library = Library::new(&sandboxer);
    let kib = 1024;
    let ids: Vec<String> = (0..6)
        .map(|n| library.make(&Spec::new(State::TornDown).ova(kib).age(days(60 - 10 * n))))
        .collect();
    // Ages 60, 50, 40, 30, 20, 10 days. --older-than 35d picks the first three, but
    // --keep-last 4 protects the newest four (ids[2..]): only ids[0] and ids[1] go.
    let report = sandboxer
        .run(&[
            "artifacts",
            "prune",
            "--older-than",
            "35d",
            "--keep-last",
            "4",
            "--json",
        ])
        .success()
        .json();
    let sandboxes: Vec<&str> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["sandbox"].as_str().unwrap())
        .collect();
    assert_eq!(sandboxes, [&ids[0], &ids[1]], "oldest first");
    // --max-total 2K: the oldest remaining go until two are left.
    let report = sandboxer
        .run(&["artifacts", "prune", "--max-total", "2K", "--json"])
        .success()
        .json();
    let sandboxes: Vec<&str> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["sandbox"].as_str().unwrap())
        .collect();
    assert_eq!(sandboxes, [&ids[2], &ids[3]]);
    assert_eq!(report["kept_bytes"], 2 * kib);
}

#[test]
fn prune_needs_a_rule_and_checks_its_values() {
    let sandboxer = Sandboxer::new();
    sandboxer
        .run(&["artifacts", "prune"])
        .code(2)
        .error_contains("say what to prune");
    sandboxer
        .run(&["artifacts", "prune", "--max-total", "lots"])
        .code(2)
        .stderr_contains("invalid --max-total \"lots\"");
}

#[test]
fn gc_purges_torn_down_records_after_their_retention_and_keeps_provenance_beside_the_ova() {
    let sandboxer = Sandboxer::new();
    let library = Library::new(&sandboxer);
    let with_ova = library.make(&Spec::new(State::TornDown).ova(4096).age(days(50)));
    let without = library.make(&Spec::new(State::Expired).age(days(50)));
    let recent = library.make(&Spec::new(State::TornDown).ova(4096).age(days(50)));
    let short = library.make(&Spec::new(State::TornDown).age(days(3)));
    let live = library.make(&Spec::new(State::Ready).ova(4096).age(days(90)));
    library.torn_down_ago(&with_ova, days(31));
    library.torn_down_ago(&without, days(31));
    library.torn_down_ago(&recent, days(29));
    library.torn_down_ago(&short, days(2));
    // A profile's retention, copied into the record at create time, wins over the default.
    library
        .registry()
        .update(&short, |record| {
            record.retention = Some(sandboxer::duration::Age::from_secs(24 * 3600));
        })
        .unwrap();
    let provenance_before: Value = serde_json::from_slice(
        &std::fs::read(
            sandboxer
                .state_dir()
                .join("artifacts")
                .join(&with_ova)
                .join("provenance.json"),
        )
        .unwrap(),
    )
    .unwrap();

    let dry = sandboxer.run(&["gc", "--dry-run"]).success();
    for id in [&with_ova, &without, &short] {
        assert!(
            dry.stderr.contains(&format!("{id}: would purge: ")),
            "{}",
            dry.describe()
        );
    }
    assert!(
        dry.stderr.contains("its retention (1d) has passed")
            && dry.stderr.contains("its retention (30d) has passed"),
        "{}",
        dry.describe()
    );
    assert_eq!(sandboxer.ids().len(), 5, "a dry run purges nothing");

    let run = sandboxer.run(&["gc", "--json"]).success().json();
    let purged: BTreeSet<&str> = run
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            assert_eq!(
                (&entry["action"], &entry["outcome"]),
                (&Value::from("purge"), &Value::from("done"))
            );
            entry["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        purged,
        BTreeSet::from([with_ova.as_str(), without.as_str(), short.as_str()])
    );
    assert_eq!(sandboxer.ids(), [recent.clone(), live.clone()]);

    // The OVA stays, with its provenance next to it, as it was before the purge (torn down).
    let kept = sandboxer.state_dir().join("artifacts").join(&with_ova);
    assert!(kept.join(format!("{with_ova}.ova")).is_file());
    let provenance: Value =
        serde_json::from_slice(&std::fs::read(kept.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(provenance["sandbox"]["state"], "torn-down");
    assert_eq!(provenance["artifacts"], provenance_before["artifacts"]);
    assert!(
        !sandboxer
            .state_dir()
            .join("artifacts")
            .join(&without)
            .exists()
    );

    // Asked for by id, the purged sandbox says where its provenance is.
    sandboxer
        .run(&["show", &with_ova])
        .code(3)
        .error_contains(&format!(
            "sandbox `{with_ova}` was purged (its record outlived its retention); its kept artifacts and their provenance are in {}",
            kept.display()
        ));
    // `artifacts list` still shows it, from the provenance file.
    let listed = sandboxer
        .run(&["artifacts", "list", "--json"])
        .success()
        .json();
    let entry = listed["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kept| kept["sandbox"] == with_ova.as_str())
        .expect("the purged sandbox's OVA is listed")
        .clone();
    assert_eq!(entry["recorded"], false);
    assert_eq!(entry["sha256"], sha256(&ova_bytes(&with_ova, 4096)));
    // Pruning it removes the directory with its provenance: nothing is left undescribed.
    sandboxer
        .run(&["artifacts", "prune", "--older-than", "40d"])
        .success()
        .stderr_contains(&format!(
            "pruned {}",
            kept.join(format!("{with_ova}.ova")).display()
        ));
    assert!(!kept.exists());
}

#[test]
fn the_settings_file_sets_the_default_retention() {
    let sandboxer = Sandboxer::new();
    let library = Library::new(&sandboxer);
    let old = library.make(&Spec::new(State::TornDown).age(days(50)));
    library.torn_down_ago(&old, days(40));
    let settings = sandboxer.root().join("config/sandboxer");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("config.toml"),
        "[history]\nretention = \"90d\"\n",
    )
    .unwrap();
    let run = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(run, Value::Array(Vec::new()), "kept for 90 days");
    std::fs::write(
        settings.join("config.toml"),
        "[history]\nretention = \"3O d\"\n",
    )
    .unwrap();
    sandboxer.run(&["gc"]).code(2).error_contains(&format!(
        "{}:2:13: invalid retention \"3O d\"",
        settings.join("config.toml").display()
    ));
    std::fs::write(
        settings.join("config.toml"),
        "[history]\nretention = \"30d\"\n",
    )
    .unwrap();
    let run = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(run[0]["id"], old.as_str());
}

/// Issue 13: a prune killed with SIGKILL at a random point leaves no record pointing at a
/// missing file and no file that no record or provenance describes; `gc` then finishes what it
/// started, and `artifacts list` agrees.
#[test]
fn a_prune_killed_at_random_points_leaves_everything_described() {
    let seed = Timestamp::now().as_nanosecond() as u64;
    eprintln!("seed {seed}");
    let mut random = Lcg(seed);
    const ROUNDS: usize = 6;
    const SANDBOXES: usize = 40;
    let populate = |sandboxer: &Sandboxer| {
        let library = Library::new(sandboxer);
        let ids: Vec<String> = (0..SANDBOXES)
            .map(|n| {
                library.make(
                    &Spec::new(State::TornDown)
                        .ova(512)
                        .age(days(100 - n as i64)),
                )
            })
            .collect();
        // Half of them purged already, so their provenance file is all that describes them.
        for (n, id) in ids.iter().enumerate() {
            library.torn_down_ago(id, days(if n % 2 == 0 { 60 } else { 1 }));
        }
        sandboxer.run(&["gc"]).success();
        assert_eq!(sandboxer.ids().len(), SANDBOXES / 2);
    };
    // How long a whole prune takes here; the kills land anywhere within that.
    let full = {
        let sandboxer = Sandboxer::new();
        populate(&sandboxer);
        let started = Instant::now();
        sandboxer
            .run(&["artifacts", "prune", "--keep-last", "0"])
            .success();
        started.elapsed()
    };
    let mut interrupted_midway = 0;
    for round in 0..ROUNDS {
        let sandboxer = Sandboxer::new();
        populate(&sandboxer);
        let delay = Duration::from_micros(random.below(full.as_micros() as u64 + 1));
        let mut child = sandboxer.spawn(&["artifacts", "prune", "--keep-last", "0"]);
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let remaining = kept_files(sandboxer.state_dir())
            .iter()
            .filter(|file| file.ends_with(".ova"))
            .count();
        if !status.success() && remaining > 0 && remaining < SANDBOXES {
            interrupted_midway += 1;
        }
        eprintln!(
            "round {round}: killed after {delay:?} of {full:?} ({status}), {remaining} OVAs left"
        );

        check_described(&sandboxer, false);
        sandboxer.run(&["gc"]).success();
        check_described(&sandboxer, true);
        let listed = sandboxer
            .run(&["artifacts", "list", "--json"])
            .success()
            .json();
        for problem in ["undescribed", "missing", "interrupted"] {
            assert_eq!(
                listed[problem],
                Value::Array(Vec::new()),
                "{problem}: {listed:#}"
            );
        }
        let after_gc = kept_files(sandboxer.state_dir())
            .iter()
            .filter(|file| file.ends_with(".ova"))
            .count();
        assert!(after_gc <= remaining);
        assert_eq!(listed["count"], after_gc);
        // And a prune run to the end leaves nothing.
        sandboxer
            .run(&["artifacts", "prune", "--keep-last", "0"])
            .success();
        check_described(&sandboxer, true);
        let left = kept_files(sandboxer.state_dir());
        assert!(left.is_empty(), "{left:?}");
    }
    eprintln!("{interrupted_midway} of {ROUNDS} kills landed mid-prune");
}

/// The invariants a prune keeps at every point. With `settled`, also that nothing is left
/// half-pruned (after `gc`).
fn check_described(sandboxer: &Sandboxer, settled: bool) {
    let state = sandboxer.state_dir();
    let mut described: BTreeSet<PathBuf> = BTreeSet::new();
    for id in sandboxer.ids() {
        let record = sandboxer.stored_record(&id);
        for artifact in record["artifacts"].as_array().unwrap() {
            let path = PathBuf::from(artifact["path"].as_str().unwrap());
            assert!(
                path.exists(),
                "record {id} points at missing {}",
                path.display()
            );
            described.insert(path);
        }
        for pruned in record["pruned_artifacts"].as_array().into_iter().flatten() {
            let path = PathBuf::from(pruned["path"].as_str().unwrap());
            assert!(
                !settled || !path.exists(),
                "{} was pruned but is still there after gc",
                path.display()
            );
            described.insert(path);
        }
    }
    for dir in std::fs::read_dir(state.join("artifacts")).unwrap() {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue;
        }
        let dir = dir.path();
        let provenance = dir.join("provenance.json");
        if provenance.exists()
            && !sandboxer
                .sandbox_dir(&dir.file_name().unwrap().to_string_lossy())
                .exists()
        {
            let document: Value =
                serde_json::from_slice(&std::fs::read(&provenance).unwrap()).unwrap();
            for artifact in document["artifacts"].as_array().unwrap() {
                let name = Path::new(artifact["path"].as_str().unwrap())
                    .file_name()
                    .unwrap();
                assert!(
                    dir.join(name).exists(),
                    "{} describes missing {name:?}",
                    provenance.display()
                );
                described.insert(dir.join(name));
            }
            for pruned in document["pruned_artifacts"].as_array().unwrap() {
                let name = Path::new(pruned["path"].as_str().unwrap())
                    .file_name()
                    .unwrap();
                assert!(!settled || !dir.join(name).exists());
                described.insert(dir.join(name));
            }
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if name == "provenance.json" {
                continue;
            }
            if name.starts_with(".tmp-") {
                // A provenance write killed midway; gc deletes it.
                assert!(!settled, "{} is still there after gc", file.display());
                continue;
            }
            assert!(
                described.contains(&file),
                "{} is described by no record and no provenance",
                file.display()
            );
        }
        if settled {
            assert!(
                std::fs::read_dir(&dir).unwrap().any(|file| {
                    !file
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".json")
                }),
                "{} keeps nothing but is still there after gc",
                dir.display()
            );
        }
    }
}

/// A small deterministic generator, so a failing round can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound.max(1)
    }
}
