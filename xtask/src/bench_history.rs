//! `cargo xtask bench-history`: `sandboxer list` (live sandboxes only, its default) over a state
//! directory of 10,000 ended and 100 live records made through the library, against `cat` of
//! the same record files into the same pipe: the I/O floor, since `list` must look at every
//! record to know which are live. Target: the ratio of the medians at most [`MAX_RATIO_TO_CAT`],
//! the budget `cargo xtask bench` sets for `list` over 10,000 records.
//!
//! Self-contained so `cargo xtask bench` can call [`measure`] and print [`HistoryBench::line`].

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::Utf8Path;
use jiff::{SignedDuration, Timestamp};
use sandboxer::inputs::Value;
use sandboxer::provenance::{BuildProvenance, FileDigest, TemplateDigest, Tool};
use sandboxer::record::{
    Artifact, BuildOutcome, BuildRun, Placement, Record, SCHEMA_VERSION, State,
};
use sandboxer::registry::Registry;
use xshell::{Shell, cmd};

pub const ENDED: usize = 10_000;
pub const LIVE: usize = 100;
/// `list` may take at most this multiple of `cat` reading the same records.
pub const MAX_RATIO_TO_CAT: f64 = 1.25;
const ROUNDS: usize = 11;

pub use crate::stats::Stats;

/// `cat` of every record file, `sandboxer list` and `sandboxer list --json`.
#[derive(Debug, Clone)]
pub struct HistoryBench {
    pub cat: Stats,
    pub list: Stats,
    pub list_json: Stats,
}

impl HistoryBench {
    /// `list` against the floor.
    pub fn ratio(&self) -> f64 {
        self.list.median.as_secs_f64() / self.cat.median.as_secs_f64()
    }

    pub fn ratio_json(&self) -> f64 {
        self.list_json.median.as_secs_f64() / self.cat.median.as_secs_f64()
    }

    pub fn within_target(&self) -> bool {
        self.ratio() <= MAX_RATIO_TO_CAT && self.ratio_json() <= MAX_RATIO_TO_CAT
    }

    /// One line for the bench report.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let stats =
            |s: &Stats| format!("{:.1} ms ({:.1}-{:.1})", ms(s.median), ms(s.min), ms(s.max));
        format!(
            "list (live only), {ENDED} ended + {LIVE} live records: cat of every record {}, list {}, list --json {} (median of {}, min-max): ratios {:.2} and {:.2} (target <= {MAX_RATIO_TO_CAT})",
            stats(&self.cat),
            stats(&self.list),
            stats(&self.list_json),
            self.list.samples.len(),
            self.ratio(),
            self.ratio_json()
        )
    }
}

/// Fills `scratch/state` through the library, then times `cat` and `sandboxer list` (a release
/// build at `sandboxer`) alternately, ABBA, after a warm-up.
pub fn measure(sandboxer: &Path, scratch: &Path) -> anyhow::Result<HistoryBench> {
    let state = scratch.join("state");
    make_records(&state)?;
    let sandboxes = state.join("sandboxes");
    let records = record_files(&sandboxes)?;
    anyhow::ensure!(
        records.len() == ENDED + LIVE,
        "expected {} records, found {}",
        ENDED + LIVE,
        records.len()
    );
    let cat = || {
        let mut command = Command::new("cat");
        command.args(&records).current_dir(&sandboxes);
        command
    };
    let list = |json: bool| {
        let mut command = Command::new(sandboxer);
        command
            .arg("list")
            .args(json.then_some("--json"))
            .env("SANDBOXER_HOME", &state)
            .env("XDG_CONFIG_HOME", scratch.join("config"))
            .current_dir(scratch);
        command
    };
    // The warm-up checks what is measured: every live sandbox, and only those.
    let (_, listed) = time(&mut list(false))?;
    anyhow::ensure!(
        listed.lines().count() == LIVE + 1,
        "`sandboxer list` printed {} lines, not a header and {LIVE} sandboxes",
        listed.lines().count()
    );
    time(&mut cat())?;
    let (mut cats, mut lists, mut jsons) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // ABBA: a drift in the machine's load hits both sides alike.
        let order: [u8; 3] = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            match which {
                0 => cats.push(time(&mut cat())?.0),
                1 => lists.push(time(&mut list(false))?.0),
                _ => jsons.push(time(&mut list(true))?.0),
            }
        }
    }
    Ok(HistoryBench {
        cat: Stats::of(cats),
        list: Stats::of(lists),
        list_json: Stats::of(jsons),
    })
}

/// `cargo xtask bench-history`, until `cargo xtask bench` reports it with the rest.
pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --release --quiet --package sandboxer").run()?;
    let root = sh.current_dir();
    let scratch =
        std::env::temp_dir().join(format!("sandboxer-bench-history-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let measured = measure(&root.join("target/release/sandboxer"), &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let measured = measured?;
    println!("{}", measured.line());
    anyhow::ensure!(
        measured.within_target(),
        "list over {ENDED} ended and {LIVE} live records is {:.2}x (--json {:.2}x) cat of them; target <= {MAX_RATIO_TO_CAT}",
        measured.ratio(),
        measured.ratio_json()
    );
    Ok(())
}

/// Runs `command` with its stdout read through a pipe (as a script would), returns the wall time
/// and what it printed; fails unless it succeeds.
fn time(command: &mut Command) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .context("a piped stdout")?
        .read_to_end(&mut out)?;
    let status = child.wait()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    Ok((elapsed, String::from_utf8_lossy(&out).into_owned()))
}

/// `<id>/record.json` of every sandbox, relative to `sandboxes`, oldest first.
fn record_files(sandboxes: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(sandboxes)? {
        let name = entry?.file_name().into_string().ok().context("UTF-8 id")?;
        if !name.starts_with('.') {
            files.push(format!("{name}/record.json"));
        }
    }
    files.sort();
    Ok(files)
}

/// A year of history: [`ENDED`] torn-down, expired and failed builds, and [`LIVE`] ready ones
/// among them, each made by `Registry::create` as `create` makes it (four threads: every record
/// is fsynced, and the file system batches concurrent syncs).
fn make_records(state: &Path) -> anyhow::Result<()> {
    let state = Utf8Path::from_path(state).context("a UTF-8 scratch directory")?;
    let registry = Registry::open(state)?;
    let now = Timestamp::now();
    let total = ENDED + LIVE;
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let registry = registry.clone();
                scope.spawn(move || -> anyhow::Result<()> {
                    for index in (worker..total).step_by(4) {
                        registry.create(|id| record(&registry, id, index, now))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Record `index`: every `(ENDED + LIVE) / LIVE`-th one is live (ready), the others ended.
fn record(registry: &Registry, id: &str, index: usize, now: Timestamp) -> Record {
    let live = index.is_multiple_of((ENDED + LIVE) / LIVE);
    let age = SignedDuration::from_mins(i64::try_from((ENDED + LIVE - index) * 50).unwrap_or(0));
    let created_at = now - age;
    let state = if live {
        State::Ready
    } else {
        [
            State::TornDown,
            State::Expired,
            State::TornDown,
            State::Failed,
        ][index % 4]
    };
    let torn_down_at = state
        .is_gone()
        .then(|| created_at + SignedDuration::from_hours(12));
    let dirs = registry.dirs(id);
    let vm_name = format!("build-{index}");
    let artifact_dir = if state.is_gone() {
        dirs.kept_artifacts.clone()
    } else {
        dirs.output.clone()
    };
    let artifacts = if state == State::Failed {
        Vec::new()
    } else {
        vec![Artifact {
            path: artifact_dir.join(format!("{vm_name}.ova")),
            bytes: 4_294_967_296,
            sha256: format!("{:064x}", index * 7_919),
            build: Some("qemu.vm".to_owned()),
        }]
    };
    let single = |text: &str| Value::Single(text.to_owned());
    Record {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned(),
        profile: format!("profile.team-{}", index % 7),
        profile_source: "profiles/team.toml".to_owned(),
        extension: "ext.vm-packer".to_owned(),
        mode: "build".to_owned(),
        state,
        state_reason: (state == State::Failed).then(|| {
            "packer build failed (exit code 1): qemu.vm: Script exited with non-zero exit status: 1"
                .to_owned()
        }),
        created_at,
        updated_at: torn_down_at.unwrap_or(created_at + SignedDuration::from_mins(20)),
        expires_at: created_at + SignedDuration::from_hours(12),
        inputs: [
            ("mode", single("build")),
            ("packer_template", single("images")),
            (
                "var_files",
                Value::List(vec!["os_pkrvars/debian-13.pkrvars.hcl".to_owned()]),
            ),
            ("vm_name", single(&vm_name)),
            ("var.token", single(sandboxer::inputs::REDACTED)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect(),
        placement: Placement {
            host: "local".to_owned(),
            slot: Some(u32::try_from(index % 4).unwrap_or(0)),
        },
        owner: None,
        artifacts,
        builds: vec![BuildRun {
            name: "qemu.vm".to_owned(),
            outcome: if state == State::Failed {
                BuildOutcome::Failed
            } else {
                BuildOutcome::Succeeded
            },
        }],
        log: Some(dirs.log.clone()),
        claim: None,
        ssh: None,
        forwarded_ports: Vec::new(),
        torn_down_at,
        retention: None,
        pruned_artifacts: Vec::new(),
        build_host: None,
        provenance: Some(provenance(&dirs.output, &vm_name, index)),
        like: None,
    }
}

/// What a real build records about what made it (about a kilobyte, as the real thing).
fn provenance(output: &Utf8Path, vm_name: &str, index: usize) -> BuildProvenance {
    let digest = |salt: usize| format!("{:064x}", index.wrapping_mul(31).wrapping_add(salt));
    let file = |path: &str, salt: usize| FileDigest {
        path: path.into(),
        sha256: digest(salt),
    };
    BuildProvenance {
        template: Some(TemplateDigest {
            path: "/srv/build/images".into(),
            sha256: digest(1),
            files: vec![
                file("images.pkr.hcl", 2),
                file("images.auto.pkrvars.hcl", 3),
                file("variables.pkr.hcl", 4),
            ],
        }),
        var_files: vec![file("/srv/build/os_pkrvars/debian-13.pkrvars.hcl", 5)],
        tool: Some(Tool {
            name: "packer".to_owned(),
            path: "/usr/bin/packer".into(),
            version: Some("1.6.6".to_owned()),
        }),
        variables: [
            ("output_directory", output.as_str()),
            ("token", sandboxer::inputs::REDACTED),
            ("vm_name", vm_name),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect(),
        input_paths: [
            (
                "packer_template",
                Value::Single("/srv/build/images".to_owned()),
            ),
            (
                "var_files",
                Value::List(vec![
                    "/srv/build/os_pkrvars/debian-13.pkrvars.hcl".to_owned(),
                ]),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect(),
    }
}
