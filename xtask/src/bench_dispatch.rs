//! What `make remote-build` adds to a direct `sandboxer create`: the same create through the shim
//! (make, the include, `remote-build.sh`, `exec`) and typed directly, alternated in one run on a
//! throwaway copy of the the-custodian-like tree. Target: at most [`TARGET_ADDED`] more at the
//! median.
//!
//! Both run the whole create (profile, inputs, template, records, locks, fsyncs, spawning Packer)
//! with `/bin/true` as Packer (`SANDBOXER_PACKER`): a real Packer build varies by tens of
//! milliseconds from one run to the next, which would drown the few that make and sh add.
//! `verify-shim` runs real builds through the shim.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::custodian::{Custodian, OnPath, output_of, text};

/// What the shim may add to a build at the median.
pub const TARGET_ADDED: Duration = Duration::from_millis(10);

/// Pairs of creates (one through make, one direct), after one warm-up pair.
const RUNS: usize = 51;

/// Wall times of the same create through `make remote-build` and typed directly.
#[derive(Debug, Clone)]
pub struct DispatchTimes {
    /// Every sample, in the order taken (for `cargo xtask bench`'s report).
    pub make_samples: Vec<Duration>,
    pub direct_samples: Vec<Duration>,
    pub runs: usize,
    pub median_make: Duration,
    pub median_direct: Duration,
    pub make_range: (Duration, Duration),
    pub direct_range: (Duration, Duration),
    /// The median of `make - direct` over pairs run back to back, in milliseconds (negative when
    /// noise wins): steadier than the difference of the medians when the machine's load drifts.
    pub median_added_ms: f64,
}

impl DispatchTimes {
    /// What the shim adds at the median, in milliseconds; the target applies to this.
    pub fn added_ms(&self) -> f64 {
        self.median_added_ms
    }

    pub fn within_target(&self) -> bool {
        self.added_ms() <= TARGET_ADDED.as_secs_f64() * 1e3
    }

    /// One line for a bench report.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "make remote-build dispatch (Packer replaced by true): make {:.1} ms (min {:.1}, max {:.1}), direct create {:.1} ms (min {:.1}, max {:.1}), median of {} pairs: {:+.1} ms added (target <= {} ms)",
            ms(self.median_make),
            ms(self.make_range.0),
            ms(self.make_range.1),
            ms(self.median_direct),
            ms(self.direct_range.0),
            ms(self.direct_range.1),
            self.runs,
            self.added_ms(),
            TARGET_ADDED.as_millis()
        )
    }
}

/// Measures with `sandboxer` (build it in release mode first for numbers that mean something).
pub fn measure(sandboxer: &Path) -> anyhow::Result<DispatchTimes> {
    let tree = Custodian::new(&crate::project_root(), sandboxer)?;
    let installed = output_of(
        tree.sandboxer(&["shim", "install", "--dest", ".", "--edit-makefile"])
            .stderr(Stdio::null()),
    )?;
    ensure!(
        installed.status.success(),
        "sandboxer shim install failed: {}",
        text(&installed.stderr)
    );
    let packer = which("true")?;
    let through_make = || {
        let mut command = tree.make(&["remote-build", "PROJECT=demo"], OnPath::Sandboxer);
        command.env("SANDBOXER_PACKER", &packer);
        time(&mut command, "make remote-build")
    };
    let direct = || {
        let mut command = tree.sandboxer(&[
            "create",
            "--profile",
            "profile.vm-haskell-build",
            "--input",
            "project=demo",
        ]);
        command.env("SANDBOXER_PACKER", &packer);
        time(&mut command, "sandboxer create")
    };
    // Warm the page cache for both.
    through_make()?;
    direct()?;
    let mut make = Vec::with_capacity(RUNS);
    let mut plain = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        // Alternate which goes first, so a drift in the machine's load hits both alike.
        if run % 2 == 0 {
            make.push(through_make()?);
            plain.push(direct()?);
        } else {
            plain.push(direct()?);
            make.push(through_make()?);
        }
    }
    let mut added: Vec<f64> = make
        .iter()
        .zip(&plain)
        .map(|(make, plain)| (make.as_secs_f64() - plain.as_secs_f64()) * 1e3)
        .collect();
    added.sort_by(f64::total_cmp);
    let (make_samples, direct_samples) = (make.clone(), plain.clone());
    make.sort();
    plain.sort();
    Ok(DispatchTimes {
        make_samples,
        direct_samples,
        runs: RUNS,
        median_added_ms: added[RUNS / 2],
        median_make: make[RUNS / 2],
        median_direct: plain[RUNS / 2],
        make_range: (make[0], make[RUNS - 1]),
        direct_range: (plain[0], plain[RUNS - 1]),
    })
}

fn time(command: &mut Command, what: &str) -> anyhow::Result<Duration> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("running {what}"))?;
    let took = started.elapsed();
    ensure!(status.success(), "{what} failed: {status}");
    Ok(took)
}

fn which(tool: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("`{tool}` is not on PATH"))
}
