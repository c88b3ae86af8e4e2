//! Figure 3, registry scale: `list --json`, `list`, `show` and `gc --dry-run` over 100, 1,000
//! and 10,000 records made through the library, against `cat` of the same record files into
//! the same pipe (the I/O floor: nothing can read the records faster than cat).

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use super::measure::{alternate, time};
use super::{Bench, Check, Comparison, Outcome, Series, Unit};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Reading every record may cost at most this multiple of cat reading them, at 10,000 records.
const MAX_RATIO_TO_CAT: f64 = 1.25;
/// Linear growth: the time per record at 10,000 records at most this multiple of that at 1,000.
const MAX_PER_RECORD_GROWTH: f64 = 1.25;
/// `show` of one sandbox may take at most this much longer among 10,000 than among 100: more
/// than the noise of a 1 ms command, less than listing 10,000 directory entries (~5 ms).
const MAX_SHOW_GROWTH_MS: f64 = 1.0;

pub fn measure(bench: &Bench) -> anyhow::Result<Outcome> {
    let dir = bench.scratch("registry")?;
    let mut comparisons = Vec::new();
    // (size, list --json median) and (size, show median), for the growth checks.
    let mut list_json_medians = Vec::new();
    let mut show_medians = Vec::new();
    for size in SIZES {
        let state = dir.join(format!("state-{size}"));
        let made = std::process::Command::new(&bench.bench_records)
            .arg(&state)
            .arg(size.to_string())
            .status()
            .context("running the bench-records example")?;
        anyhow::ensure!(made.success(), "bench-records failed: {made}");
        let sandboxes = state.join("sandboxes");
        let records = record_files(&sandboxes)?;
        anyhow::ensure!(
            records.len() == size,
            "expected {size} records, found {}",
            records.len()
        );
        let rounds = bench.rounds(if size >= 10_000 { 11 } else { 21 });
        let cat_all = || cat(&sandboxes, &records);
        for (args, name) in [
            (&["list", "--json"][..], "list --json"),
            (&["list"], "list"),
            (&["gc", "--dry-run"], "gc --dry-run"),
        ] {
            let (floor, through) = alternate(
                2,
                rounds,
                || time(&mut cat_all()),
                || time(&mut bench.sandboxer(&state, &dir, args)),
            )?;
            let subject = Series::millis(format!("sandboxer {name}"), &through);
            let baseline = Series::millis(format!("cat {size} record files"), &floor);
            let mut checks = Vec::new();
            if size == 10_000 {
                checks.push(Check::at_most(
                    "ratio to cat",
                    subject.median() / baseline.median(),
                    MAX_RATIO_TO_CAT,
                    Unit::Times,
                ));
            }
            if name == "list --json" {
                list_json_medians.push((size, subject.median()));
                if let [.., (small, small_ms), (large, large_ms)] = list_json_medians[..]
                    && large == 10_000
                {
                    let growth = (large_ms / large as f64) / (small_ms / small as f64);
                    checks.push(Check::at_most(
                        format!("per-record time vs {small}"),
                        growth,
                        MAX_PER_RECORD_GROWTH,
                        Unit::Times,
                    ));
                }
            }
            comparisons.push(Comparison {
                name: format!("{name}, {size} records"),
                subject,
                baseline,
                checks,
            });
        }

        // `show` of the newest sandbox, by its full id.
        let newest = records.last().context("no records")?;
        let id = newest.split('/').next().unwrap_or_default().to_owned();
        let one = [newest.clone()];
        let (floor, through) = alternate(
            3,
            bench.rounds(31),
            || time(&mut cat(&sandboxes, &one)),
            || time(&mut bench.sandboxer(&state, &dir, &["show", &id])),
        )?;
        let subject = Series::millis("sandboxer show ID", &through);
        show_medians.push(subject.median());
        let mut checks = Vec::new();
        if size == 10_000 {
            checks.push(Check::at_most(
                format!("more than among {}", SIZES[0]),
                subject.median() - show_medians[0],
                MAX_SHOW_GROWTH_MS,
                Unit::Millis,
            ));
        }
        comparisons.push(Comparison {
            name: format!("show, {size} records"),
            subject,
            baseline: Series::millis("cat 1 record file", &floor),
            checks,
        });
    }
    Ok(Outcome::Measured(comparisons))
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

fn cat(sandboxes: &Path, files: &[String]) -> Command {
    let mut command = Command::new("cat");
    command.args(files).current_dir(sandboxes);
    command
}
