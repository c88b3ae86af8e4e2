//! `cargo xtask bench`: speed and memory targets, as ratios measured in one run (the machines
//! are shared and noisy, so absolute numbers mean little).

use std::time::{Duration, Instant};

use xshell::{Shell, cmd};

use crate::setup::{self, Purpose};

/// sandboxer's wall time for the bundled example may be at most this multiple of a bare
/// `packer build` of the same template (reading the template, hashing the OVA, writing records).
const MAX_OVERHEAD_RATIO: f64 = 1.5;
/// Peak memory streaming 25x more Packer output may grow by at most this factor.
const MAX_MEMORY_GROWTH: f64 = 1.25;

const RUNS: usize = 5;

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    setup::run(sh, Purpose::Bench)?;
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --release --quiet --package sandboxer").run()?;
    let root = sh.current_dir();
    let sandboxer = root.join("target/release/sandboxer");
    let scratch = std::env::temp_dir().join(format!("sandboxer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    // 1. Overhead over a bare Packer build of the bundled example.
    let example = root.join("examples/ova");
    let mut bare = Vec::new();
    let mut through = Vec::new();
    for run in 0..RUNS {
        let out = scratch.join(format!("bare-{run}"));
        let _dir = sh.push_dir(&example);
        let _env = sh.push_env("CHECKPOINT_DISABLE", "1");
        bare.push(time(|| {
            cmd!(sh, "packer build -machine-readable -color=false -var vm_name=bench -var output_directory={out} ova.pkr.hcl")
                .quiet()
                .ignore_stdout()
                .run()
        })?);
        drop(_dir);
        let _home = sh.push_env("SANDBOXER_HOME", scratch.join("state"));
        through.push(time(|| {
            cmd!(
                sh,
                "{sandboxer} create --profile profile.vm-packer-build -i vm_name=bench -q"
            )
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
        })?);
    }
    let (bare, through) = (median(bare), median(through));
    let overhead = through.as_secs_f64() / bare.as_secs_f64();
    println!(
        "create overhead: packer build {:.0} ms, sandboxer create {:.0} ms (median of {RUNS}): ratio {overhead:.2} (target <= {MAX_OVERHEAD_RATIO})",
        bare.as_secs_f64() * 1e3,
        through.as_secs_f64() * 1e3
    );

    // 2. Memory while streaming a lot of output: constant, whatever the build's length.
    let fake = root.join("tests/fixtures/fakes/fake-packer-floods-output");
    let quick = root.join("tests/fixtures/templates/quick/quick.pkr.hcl");
    let template = format!("packer_template={}", quick.display());
    let mut peaks = Vec::new();
    for lines in ["20000", "500000"] {
        let _home = sh.push_env("SANDBOXER_HOME", scratch.join("state"));
        let _packer = sh.push_env("SANDBOXER_PACKER", &fake);
        let _lines = sh.push_env("FAKE_PACKER_LINES", lines);
        let started = Instant::now();
        let report = cmd!(sh, "/usr/bin/time -f %M {sandboxer} create --profile vm-packer-build -i {template} -i vm_name=flood -q")
            .quiet()
            .ignore_stdout()
            .read_stderr()?;
        let kib: f64 = report
            .lines()
            .last()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no peak RSS from /usr/bin/time: {report}"))?;
        println!(
            "streaming {lines:>6} lines: peak RSS {:.1} MiB, {:.2} s",
            kib / 1024.0,
            started.elapsed().as_secs_f64()
        );
        peaks.push(kib);
    }
    let growth = peaks[1] / peaks[0];
    println!("memory growth for 25x the output: {growth:.2}x (target <= {MAX_MEMORY_GROWTH})");

    // 3. What a build host adds to the same trivial build (reported, no target).
    let remote_scratch = crate::bench_remote::short_scratch("sbr")?;
    let remote = crate::bench_remote::measure(&sandboxer, &root, &remote_scratch);
    let _ = std::fs::remove_dir_all(&remote_scratch);
    println!("{}", remote?.line());

    let _ = std::fs::remove_dir_all(&scratch);
    anyhow::ensure!(
        overhead <= MAX_OVERHEAD_RATIO,
        "create overhead {overhead:.2} exceeds {MAX_OVERHEAD_RATIO}"
    );
    anyhow::ensure!(
        growth <= MAX_MEMORY_GROWTH,
        "memory grows {growth:.2}x with output; target {MAX_MEMORY_GROWTH}"
    );
    Ok(())
}

fn time(run: impl FnOnce() -> xshell::Result<()>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run()?;
    Ok(started.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
