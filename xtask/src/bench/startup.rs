//! Figure 5, startup: the quick commands against `packer version`, the cheapest Packer start.

use super::measure::{alternate, time};
use super::{Bench, Check, Comparison, Outcome, Series, Unit};

/// A quick command's whole run, at the median.
const MAX_MS: f64 = 5.0;

pub fn measure(bench: &Bench) -> anyhow::Result<Outcome> {
    let dir = bench.scratch("startup")?;
    let state = dir.join("state");
    let rounds = bench.rounds(31);
    let mut comparisons = Vec::new();
    for args in [
        &["--version"][..],
        &["profiles", "list"],
        &["list"], // on an empty state dir
    ] {
        let (direct, through) = alternate(
            3,
            rounds,
            || time(&mut bench.packer(&dir, &dir, &["version"])),
            || time(&mut bench.sandboxer(&state, &dir, args)),
        )?;
        let subject = Series::millis(format!("sandboxer {}", args.join(" ")), &through);
        comparisons.push(Comparison {
            name: format!("sandboxer {}", args.join(" ")),
            checks: vec![Check::at_most(
                "median",
                subject.median(),
                MAX_MS,
                Unit::Millis,
            )],
            subject,
            baseline: Series::millis("packer version", &direct),
        });
    }
    Ok(Outcome::Measured(comparisons))
}
