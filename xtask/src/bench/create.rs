//! Figure 1, orchestration overhead: `sandboxer create` (build mode, real Packer) against
//! `packer build -machine-readable` run directly on the same trivial template.

use std::path::Path;

use super::measure::{alternate, time};
use super::{Bench, Check, Comparison, Outcome, Series, Unit};

/// What sandboxer may add to a build, at the median.
const MAX_ADDED_MS: f64 = 10.0;

pub fn measure(bench: &Bench) -> anyhow::Result<Outcome> {
    let dir = bench.scratch("create")?;
    let template_dir = dir.join("quick");
    copy_template(
        &bench.fixture("templates/quick/quick.pkr.hcl"),
        &template_dir,
    )?;
    let state = dir.join("state");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;

    // The same arguments sandboxer passes (flags first, the template last).
    let packer_args = [
        "build",
        "-machine-readable",
        "-color=false",
        "-on-error=cleanup",
        "-var",
        "vm_name=bench",
        "quick.pkr.hcl",
    ];
    let create_args = [
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        "packer_template=quick/quick.pkr.hcl",
        "-i",
        "vm_name=bench",
        "-q",
    ];
    let rounds = bench.rounds(21);
    let (direct, through) = alternate(
        3,
        rounds,
        || time(&mut bench.packer(&template_dir, &tmp, &packer_args)),
        || time(&mut bench.sandboxer(&state, &dir, &create_args)),
    )?;
    let baseline = Series::millis(format!("packer {}", packer_args.join(" ")), &direct);
    let subject = Series::millis(format!("sandboxer {}", create_args.join(" ")), &through);
    let added = subject.median() - baseline.median();
    Ok(Outcome::Measured(vec![Comparison {
        name: "create on a trivial null template".to_owned(),
        checks: vec![Check::at_most(
            "added at the median",
            added,
            MAX_ADDED_MS,
            Unit::Millis,
        )],
        subject,
        baseline,
    }]))
}

fn copy_template(from: &Path, to_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to_dir)?;
    std::fs::copy(from, to_dir.join("quick.pkr.hcl"))?;
    Ok(())
}
