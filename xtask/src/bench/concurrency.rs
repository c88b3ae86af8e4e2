//! Figure 7, concurrency: 32 `sandboxer create` started at once on a placement host with
//! `max_concurrent = 4`, against 8 sequential waves of 4 `packer build` run directly.

use super::measure::{alternate, time_all};
use super::{Bench, Check, Comparison, Outcome, Series, Unit};

const CREATES: usize = 32;
const MAX_CONCURRENT: usize = 4;
const WAVES: usize = CREATES / MAX_CONCURRENT;
/// What placement may add per wave: `placement::FALLBACK_POLL` in sandboxer, the longest a
/// queued create can sleep before it looks again, plus figure 1's create overhead target.
const MAX_ADDED_PER_WAVE_MS: f64 = 100.0 + 10.0;

pub fn measure(bench: &Bench) -> anyhow::Result<Outcome> {
    let dir = bench.scratch("concurrency")?;
    let template_dir = dir.join("quick");
    std::fs::create_dir_all(&template_dir)?;
    std::fs::copy(
        bench.fixture("templates/quick/quick.pkr.hcl"),
        template_dir.join("quick.pkr.hcl"),
    )?;
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles)?;
    std::fs::write(
        profiles.join("profile.bench-waves.toml"),
        format!(
            "id = \"profile.bench-waves\"\ndescription = \"figure 7\"\nextension = \"ext.vm-packer\"\nttl = \"1h\"\n\n[placement]\nhost = \"bench\"\nmax_concurrent = {MAX_CONCURRENT}\n\n[inputs]\nmode = \"build\"\npacker_template = \"quick/quick.pkr.hcl\"\n"
        ),
    )?;
    let state = dir.join("state");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;

    let direct = || {
        let mut total = std::time::Duration::ZERO;
        for wave in 0..WAVES {
            let builds = (0..MAX_CONCURRENT)
                .map(|index| {
                    let var = format!("vm_name=w{wave}-{index}");
                    bench.packer(
                        &template_dir,
                        &tmp,
                        &[
                            "build",
                            "-machine-readable",
                            "-color=false",
                            "-on-error=cleanup",
                            "-var",
                            &var,
                            "quick.pkr.hcl",
                        ],
                    )
                })
                .collect();
            total += time_all(builds)?;
        }
        Ok(total)
    };
    let through = || {
        let creates = (0..CREATES)
            .map(|index| {
                let vm_name = format!("vm_name=c{index}");
                bench.sandboxer(
                    &state,
                    &dir,
                    &["create", "--profile", "bench-waves", "-i", &vm_name, "-q"],
                )
            })
            .collect();
        time_all(creates)
    };
    let (direct, through) = alternate(1, bench.rounds(3), direct, through)?;
    let baseline = Series::millis(
        format!("{WAVES} waves of {MAX_CONCURRENT} packer build at once"),
        &direct,
    );
    let subject = Series::millis(
        format!("{CREATES} sandboxer create at once, max_concurrent = {MAX_CONCURRENT}"),
        &through,
    );
    let added_per_wave = (subject.median() - baseline.median()) / WAVES as f64;
    Ok(Outcome::Measured(vec![Comparison {
        name: format!("{CREATES} creates, {MAX_CONCURRENT} at a time"),
        checks: vec![Check::at_most(
            "added per wave",
            added_per_wave,
            MAX_ADDED_PER_WAVE_MS,
            Unit::Millis,
        )],
        subject,
        baseline,
    }]))
}
