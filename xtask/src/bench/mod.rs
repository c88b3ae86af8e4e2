//! `cargo xtask bench`: every figure measured against its baseline in the same run.
//!
//! The machines are shared and noisy, so a figure never compares against a number remembered
//! from another day: it runs its subject and its baseline alternately (ABBA order, so a drift in
//! the machine's load hits both alike), several rounds after a warm-up, and reports the median
//! and the range of each. A table goes to stdout, the same as JSON to `target/bench/report.json`
//! and as Markdown to `target/bench/report.md`; a missed target makes the run fail unless
//! `--no-fail` is given.

mod concurrency;
mod create;
mod measure;
mod registry;
mod report;
mod startup;
mod stream;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use xshell::{Shell, cmd};

pub use measure::{Series, Unit};

use crate::setup::{self, Purpose};

const USAGE: &str = "\
cargo xtask bench [--no-fail] [--rounds N] [--keep-scratch] [FIGURE...]

Measures each figure against its baseline in the same run and fails when a target is missed.
--keep-scratch keeps the generated inputs (state dirs, Packer output) for profiling.
FIGURE is a number or a name (default: all):";

/// One figure of the performance page: a function that measures a named comparison.
pub struct Figure {
    pub number: u8,
    /// The name that selects it on the command line.
    pub name: &'static str,
    pub title: &'static str,
    pub measure: fn(&Bench) -> anyhow::Result<Outcome>,
}

pub const FIGURES: [Figure; 9] = [
    Figure {
        number: 1,
        name: "create",
        title: "orchestration overhead: sandboxer create vs packer build",
        measure: create::measure,
    },
    Figure {
        number: 2,
        name: "dispatch",
        title: "dispatch overhead: make remote-build vs sandboxer create",
        measure: dispatch,
    },
    Figure {
        number: 3,
        name: "registry",
        title: "registry scale: list/show/gc over 100, 1,000 and 10,000 records vs cat",
        measure: registry::measure,
    },
    Figure {
        number: 4,
        name: "stream",
        title: "stream throughput and memory: 1 GiB of machine-readable output vs cat",
        measure: stream::measure,
    },
    Figure {
        number: 5,
        name: "startup",
        title: "startup: quick commands vs packer version",
        measure: startup::measure,
    },
    Figure {
        number: 6,
        name: "state-hub",
        title: "slow State Hub: a build with State Hub answering after 2 s vs none",
        measure: state_hub,
    },
    Figure {
        number: 7,
        name: "concurrency",
        title: "concurrency: 32 creates at max_concurrent = 4 vs 8 waves of 4 packer builds",
        measure: concurrency::measure,
    },
    Figure {
        number: 8,
        name: "history",
        title: "a year of history: list (live only) over 10,000 ended and 100 live records vs cat",
        measure: history,
    },
    Figure {
        number: 9,
        name: "remote",
        title: "remote build: a trivial build on a build host (sshd on loopback) vs the same build here",
        measure: remote,
    },
];

/// Figure 9, measured by `crate::bench_remote` (also `cargo xtask bench-remote`): `create` of
/// the same trivial template (Packer's `file` builder writing a small OVA) on a build host that
/// is an sshd on loopback, and here. Reported, with no target: most of what a build host adds
/// is SSH's connection and round trips, which cost what the machine and the network make them.
fn remote(bench: &Bench) -> anyhow::Result<Outcome> {
    let scratch = bench.scratch("remote")?;
    let measured = crate::bench_remote::measure(
        &bench.sandboxer,
        &bench.root,
        &scratch,
        bench.rounds(crate::bench_remote::RUNS),
    )?;
    Ok(Outcome::Measured(vec![Comparison {
        name: format!(
            "a trivial build on a build host vs here: {:+.0} ms added (median of back-to-back pairs)",
            measured.median_added_ms
        ),
        checks: Vec::new(),
        subject: Series::millis(
            "sandboxer create -i placement_host=bench (sshd on loopback)",
            &measured.remote_samples,
        ),
        baseline: Series::millis(
            "sandboxer create -i placement_host=local",
            &measured.local_samples,
        ),
    }]))
}

/// Figure 8, measured by `crate::bench_history` (also `cargo xtask bench-history`): the default
/// `list` and `list --json` over a state dir of many ended and a few live sandboxes, against
/// `cat` of every record file.
fn history(bench: &Bench) -> anyhow::Result<Outcome> {
    let scratch = bench.scratch("history")?;
    let measured = crate::bench_history::measure(&bench.sandboxer, &scratch)?;
    let cat = Series::millis("cat of every record file", &measured.cat.samples);
    let compare = |name: &str, subject: &crate::bench_history::Stats, ratio: f64| Comparison {
        name: format!(
            "{name}, {} ended + {} live records",
            crate::bench_history::ENDED,
            crate::bench_history::LIVE
        ),
        checks: vec![Check::at_most(
            "ratio to cat",
            ratio,
            crate::bench_history::MAX_RATIO_TO_CAT,
            Unit::Times,
        )],
        subject: Series::millis(name, &subject.samples),
        baseline: cat.clone(),
    };
    Ok(Outcome::Measured(vec![
        compare("sandboxer list", &measured.list, measured.ratio()),
        compare(
            "sandboxer list --json",
            &measured.list_json,
            measured.ratio_json(),
        ),
    ]))
}

/// Figure 2, measured by `crate::bench_dispatch` (also `cargo xtask bench-dispatch`): the
/// same create through `make remote-build` and typed directly, Packer replaced by `true`.
fn dispatch(bench: &Bench) -> anyhow::Result<Outcome> {
    let times = crate::bench_dispatch::measure(&bench.sandboxer)?;
    Ok(Outcome::Measured(vec![Comparison {
        name: "make remote-build, Packer replaced by true".to_owned(),
        checks: vec![Check::at_most(
            "added (median of back-to-back pairs)",
            times.added_ms(),
            crate::bench_dispatch::TARGET_ADDED.as_secs_f64() * 1e3,
            Unit::Millis,
        )],
        subject: Series::millis("make remote-build PROJECT=demo", &times.make_samples),
        baseline: Series::millis(
            "sandboxer create --profile profile.vm-haskell-build --input project=demo",
            &times.direct_samples,
        ),
    }]))
}

/// Figure 6, measured by `crate::bench_hub` (also `cargo xtask bench-hub`): a 2 s build with a
/// State Hub on loopback that answers every request after 2 s, and with none.
fn state_hub(bench: &Bench) -> anyhow::Result<Outcome> {
    let scratch = bench.scratch("state-hub")?;
    let measured = crate::bench_hub::measure(&bench.sandboxer, &bench.root, &scratch)?;
    Ok(Outcome::Measured(vec![Comparison {
        name: "a 2 s build, State Hub answering after 2 s".to_owned(),
        checks: vec![Check::at_most(
            "ratio of the medians",
            measured.ratio(),
            crate::bench_hub::MAX_RATIO,
            Unit::Times,
        )],
        subject: Series::millis(
            "sandboxer create with STATE_HUB_URL",
            &measured.slow_samples,
        ),
        baseline: Series::millis(
            "sandboxer create without State Hub",
            &measured.without_samples,
        ),
    }]))
}

/// What a figure found.
pub enum Outcome {
    Measured(Vec<Comparison>),
    /// The measurement itself failed (a command exited non-zero); reported with the other
    /// figures' results, and a failure of the run.
    Broken(String),
}

/// A subject beside its baseline, and the targets it is held to.
pub struct Comparison {
    pub name: String,
    pub subject: Series,
    pub baseline: Series,
    pub checks: Vec<Check>,
}

/// One target: `value` (in `unit`) must be at most (or at least) `limit`.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub value: f64,
    pub limit: f64,
    pub unit: Unit,
    pub at_least: bool,
}

impl Check {
    pub fn at_most(what: impl Into<String>, value: f64, limit: f64, unit: Unit) -> Check {
        Check {
            what: what.into(),
            value,
            limit,
            unit,
            at_least: false,
        }
    }

    pub fn at_least(what: impl Into<String>, value: f64, limit: f64, unit: Unit) -> Check {
        Check {
            at_least: true,
            ..Check::at_most(what, value, limit, unit)
        }
    }

    pub fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.limit
        } else {
            self.value <= self.limit
        }
    }

    pub fn describe(&self) -> String {
        let op = if self.at_least { ">=" } else { "<=" };
        format!(
            "{} {} {op} {}",
            self.what,
            self.unit.format(self.value),
            self.unit.format(self.limit)
        )
    }
}

/// Everything a figure needs: where things are, and how many rounds to run.
pub struct Bench {
    pub root: PathBuf,
    pub sandboxer: PathBuf,
    /// `sandboxer/examples/bench-records.rs`, built with the binary.
    pub bench_records: PathBuf,
    /// A directory of its own for each figure, below one that goes away at the end.
    scratch: PathBuf,
    rounds: Option<usize>,
}

impl Bench {
    /// Rounds to run: `--rounds`, else the figure's own default.
    pub fn rounds(&self, default: usize) -> usize {
        self.rounds.unwrap_or(default)
    }

    /// A fresh, empty directory for one figure.
    pub fn scratch(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.scratch.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    pub fn fixture(&self, path: &str) -> PathBuf {
        self.root.join("tests/fixtures").join(path)
    }

    /// A `sandboxer` command isolated from the caller's configuration: its own state dir, config
    /// dir and working directory, no SANDBOXER_* or PACKER_* settings from outside.
    pub fn sandboxer(&self, state: &Path, cwd: &Path, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.sandboxer);
        scrub_env(&mut command);
        command
            .args(args)
            .current_dir(cwd)
            .env("SANDBOXER_HOME", state)
            .env("XDG_CONFIG_HOME", cwd.join(".config"));
        command
    }

    /// A `packer` command run as a person would for a build: from the template's directory,
    /// without Packer's version check (sandboxer turns it off too).
    pub fn packer(&self, cwd: &Path, tmpdir: &Path, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("packer");
        scrub_env(&mut command);
        command
            .args(args)
            .current_dir(cwd)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TMPDIR", tmpdir);
        command
    }
}

pub(super) fn scrub_env(command: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["SANDBOXER_", "PACKER_", "PKR_VAR_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&*name);
        }
    }
}

struct Options {
    no_fail: bool,
    keep_scratch: bool,
    rounds: Option<usize>,
    figures: Vec<&'static Figure>,
}

fn parse_args(args: &[&str]) -> anyhow::Result<Options> {
    let mut options = Options {
        no_fail: false,
        keep_scratch: false,
        rounds: None,
        figures: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--no-fail" => options.no_fail = true,
            "--keep-scratch" => options.keep_scratch = true,
            "--rounds" => {
                let rounds = args.next().context("--rounds needs a number")?;
                let rounds: usize = rounds
                    .parse()
                    .ok()
                    .filter(|rounds| *rounds >= 1)
                    .with_context(|| format!("--rounds {rounds}: expected a number >= 1"))?;
                options.rounds = Some(rounds);
            }
            "--help" | "-h" => anyhow::bail!("{}", usage()),
            name => {
                let figure = FIGURES
                    .iter()
                    .find(|figure| figure.name == name || figure.number.to_string() == name)
                    .with_context(|| format!("unknown figure `{name}`\n\n{}", usage()))?;
                if !options
                    .figures
                    .iter()
                    .any(|chosen| chosen.number == figure.number)
                {
                    options.figures.push(figure);
                }
            }
        }
    }
    if options.figures.is_empty() {
        options.figures = FIGURES.iter().collect();
    }
    options.figures.sort_by_key(|figure| figure.number);
    Ok(options)
}

fn usage() -> String {
    let mut text = USAGE.to_owned();
    for figure in &FIGURES {
        text.push_str(&format!(
            "\n  {} {:<12} {}",
            figure.number, figure.name, figure.title
        ));
    }
    text
}

pub fn run(sh: &Shell, args: &[&str]) -> anyhow::Result<()> {
    let options = parse_args(args)?;
    setup::run(sh, Purpose::Bench)?;
    let cargo = crate::cargo();
    cmd!(
        sh,
        "{cargo} build --release --quiet --package sandboxer --bin sandboxer --example bench-records"
    )
    .run()?;
    let root = sh.current_dir();
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    // Short: Packer's plugin sockets live in the sandbox's TMPDIR, and a Unix socket path may
    // not exceed 107 bytes.
    let scratch = std::env::temp_dir().join(format!("sandboxer-bench-{}", std::process::id()));
    let bench = Bench {
        sandboxer: root.join("target/release/sandboxer"),
        bench_records: root.join("target/release/examples/bench-records"),
        root: root.clone(),
        scratch: scratch.clone(),
        rounds: options.rounds,
    };
    let machine = report::Machine::read(sh);
    eprintln!("xtask bench: {}", machine.describe());

    let mut results = Vec::new();
    for figure in &options.figures {
        // Write back what the build (or the previous figure's gigabyte of logs) left dirty:
        // otherwise every fsync measured waits for that writeback.
        cmd!(sh, "sync").quiet().run()?;
        eprintln!("xtask bench: figure {} ({})...", figure.number, figure.name);
        let outcome = (figure.measure)(&bench).unwrap_or_else(|err| {
            eprintln!(
                "xtask bench: figure {} could not be measured: {err:#}",
                figure.number
            );
            Outcome::Broken(format!("{err:#}"))
        });
        results.push((*figure, outcome));
    }
    if options.keep_scratch {
        eprintln!("xtask bench: kept {}", scratch.display());
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }

    let table = report::table(&results);
    print!("{table}");
    std::fs::write(
        out_dir.join("report.md"),
        report::markdown(&machine, &results),
    )?;
    let json = report::json(&machine, &results);
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    eprintln!(
        "xtask bench: wrote {} and report.md",
        out_dir.join("report.json").display()
    );

    let missed: Vec<String> = results
        .iter()
        .flat_map(|(figure, outcome)| match outcome {
            Outcome::Measured(comparisons) => comparisons
                .iter()
                .flat_map(|comparison| {
                    comparison
                        .checks
                        .iter()
                        .filter(|check| !check.met())
                        .map(move |check| {
                            format!(
                                "figure {} {}: {}",
                                figure.number,
                                comparison.name,
                                check.describe()
                            )
                        })
                })
                .collect::<Vec<_>>(),
            Outcome::Broken(_) => vec![format!("figure {}: could not be measured", figure.number)],
        })
        .collect();
    if missed.is_empty() {
        eprintln!("xtask bench: every target met");
        return Ok(());
    }
    let list = missed.join("\n  ");
    if options.no_fail {
        eprintln!("xtask bench: missed (ignored with --no-fail):\n  {list}");
        return Ok(());
    }
    anyhow::bail!("{} target(s) missed:\n  {list}", missed.len())
}
