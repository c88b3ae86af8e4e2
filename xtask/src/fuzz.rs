//! `cargo xtask fuzz`: the coverage-guided fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer).
//!
//! Only the stable toolchain exists here, so cargo-fuzz runs with `RUSTC_BOOTSTRAP=1` (for the
//! `-Z` flags it passes) and without a sanitizer: sandboxer has no `unsafe` code, and what the
//! targets look for are panics, hangs and broken invariants (`fuzz/checks.rs`).

use std::path::Path;

use anyhow::Context as _;
use xshell::{Shell, cmd};

/// The version `cargo xtask setup` installs; the one the fuzz crate was made with.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

const TARGETS: [&str; 5] = ["profile", "input", "duration", "record", "machine_readable"];

/// Seconds per target in CI: five targets, about 25 s in all after the build.
const CI_SECONDS: u32 = 5;

const USAGE: &str = "\
cargo xtask fuzz --ci                  every target for a few seconds over the checked-in corpus
cargo xtask fuzz TARGET [SECONDS]      one target (default 60 s), keeping new coverage in its corpus

targets: profile, input, duration, record, machine_readable
A crash is saved in fuzz/artifacts/TARGET/; copy it into fuzz/regressions/TARGET/ (replayed by
`cargo test`, sandboxer/tests/it/fuzz.rs) and fix the code.";

pub fn run(sh: &Shell, args: &[&str]) -> anyhow::Result<()> {
    match args {
        ["--ci"] => {
            install_cargo_fuzz(sh)?;
            build(sh)?;
            let mut crashed = Vec::new();
            for target in TARGETS {
                if let Err(err) = fuzz(sh, target, CI_SECONDS, false) {
                    eprintln!("xtask fuzz: {target}: {err:#}");
                    crashed.push(target);
                }
            }
            anyhow::ensure!(
                crashed.is_empty(),
                "fuzz targets failed: {crashed:?}; inputs are in fuzz/artifacts/\n\n{USAGE}"
            );
            eprintln!("xtask fuzz: no target failed in {CI_SECONDS} s each");
            Ok(())
        }
        [target] | [target, _] if TARGETS.contains(target) => {
            let seconds = match args.get(1) {
                Some(seconds) => seconds
                    .parse()
                    .with_context(|| format!("SECONDS: expected a number, not {seconds:?}"))?,
                None => 60,
            };
            install_cargo_fuzz(sh)?;
            build(sh)?;
            fuzz(sh, target, seconds, true)
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

/// Installs cargo-fuzz from crates.io when it is missing.
pub fn install_cargo_fuzz(sh: &Shell) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    let installed = cmd!(sh, "{cargo} fuzz --version")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|version| version.contains(CARGO_FUZZ_VERSION));
    if !installed {
        eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
        cmd!(
            sh,
            "{cargo} install cargo-fuzz --version {CARGO_FUZZ_VERSION} --locked"
        )
        .run()?;
    }
    Ok(())
}

fn build(sh: &Shell) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    let _dir = sh.push_dir("fuzz");
    let _bootstrap = sh.push_env("RUSTC_BOOTSTRAP", "1");
    cmd!(sh, "{cargo} fuzz build --sanitizer none --debug-assertions").run()?;
    Ok(())
}

/// Runs one target for `seconds`. New inputs go to a scratch corpus, merged into the checked-in
/// one only when `keep` (so CI never changes the tree).
fn fuzz(sh: &Shell, target: &str, seconds: u32, keep: bool) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    let _dir = sh.push_dir("fuzz");
    let _bootstrap = sh.push_env("RUSTC_BOOTSTRAP", "1");
    let scratch = tempfile_dir(target)?;
    let scratch_arg = scratch.display().to_string();
    let corpus = format!("corpus/{target}");
    let max_time = format!("-max_total_time={seconds}");
    let artifacts = format!("-artifact_prefix=artifacts/{target}/");
    std::fs::create_dir_all(Path::new("fuzz/artifacts").join(target))?;
    let ran = cmd!(
        sh,
        "{cargo} fuzz run --sanitizer none --debug-assertions {target} {scratch_arg} {corpus} -- {max_time} -timeout=10 -rss_limit_mb=1024 -print_final_stats=0 {artifacts}"
    )
    .run();
    if ran.is_ok() && keep {
        // Keep only inputs that reach new edges (not merely new hit counts), so the checked-in
        // corpus stays small.
        cmd!(
            sh,
            "{cargo} fuzz run --sanitizer none --debug-assertions {target} {corpus} {scratch_arg} -- -merge=1 -use_counters=0 -use_cmp=0"
        )
        .run()?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    ran.with_context(|| format!("fuzz target {target}"))?;
    Ok(())
}

fn tempfile_dir(target: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sandboxer-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
