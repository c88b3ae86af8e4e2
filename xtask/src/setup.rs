//! Installs the system packages the demo and the tests need, only those missing.

use xshell::{Shell, cmd};

/// Why packages are needed; the test suite needs a superset of the demo's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Demo,
    Test,
    Bench,
}

/// `(command that proves the tool is there, Debian package that provides it)`.
const DEMO_TOOLS: &[(&str, &str)] = &[
    ("packer", "packer"),
    ("qemu-img", "qemu-utils"),
    ("tar", "tar"),
];
/// What the tests run besides the demo's tools: `make` runs the `make remote-build` shim,
/// `kill` signals builds, `strace` injects a SIGKILL at a chosen system call, `shellcheck` checks
/// the shipped scripts; the attach tests run a real sshd on loopback and reach it with the
/// system ssh, with keys ssh-keygen makes at test time; the build-host tests run several such
/// sshds as build hosts, which need what a real build host needs (rsync both ways, flock and
/// setsid for the agent, sha256sum and realpath to hash artifacts there); g++ builds libFuzzer
/// for `cargo xtask fuzz`.
const TEST_TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("shellcheck", "shellcheck"),
    ("kill", "procps"),
    ("strace", "strace"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("sshd", "openssh-server"),
    ("rsync", "rsync"),
    ("flock", "util-linux"),
    ("setsid", "util-linux"),
    ("sha256sum", "coreutils"),
    ("realpath", "coreutils"),
    ("g++", "g++"),
];
/// GNU time reports a run's peak memory; make runs `make remote-build` (bench-dispatch); the
/// remote-build figure builds on a build host that is an sshd on loopback.
const BENCH_TOOLS: &[(&str, &str)] = &[
    ("time", "time"),
    ("make", "make"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("sshd", "openssh-server"),
    ("rsync", "rsync"),
    ("flock", "util-linux"),
    ("setsid", "util-linux"),
];

pub fn run(sh: &Shell, purpose: Purpose) -> anyhow::Result<()> {
    let mut wanted: Vec<(&str, &str)> = DEMO_TOOLS.to_vec();
    match purpose {
        Purpose::Demo => {}
        Purpose::Test => wanted.extend_from_slice(TEST_TOOLS),
        Purpose::Bench => wanted.extend_from_slice(BENCH_TOOLS),
    }
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if purpose == Purpose::Test {
        // From crates.io, not Debian: the fuzz targets' runner.
        crate::fuzz::install_cargo_fuzz(sh)?;
    }
    if missing.is_empty() {
        eprintln!("xtask setup: all tools present");
        return Ok(());
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    anyhow::ensure!(
        is_root(sh),
        "missing packages {missing:?} and not root: run `sudo apt-get install {}`",
        missing.join(" ")
    );
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(
        sh,
        "apt-get install -y -qq --no-install-recommends {missing...}"
    )
    .run()?;
    let still_missing: Vec<&str> = wanted
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(tool, _)| *tool)
        .collect();
    anyhow::ensure!(
        still_missing.is_empty(),
        "still missing after apt-get: {still_missing:?}"
    );
    Ok(())
}

/// Whether `tool` is installed: on PATH, or (for daemons such as sshd) in /usr/sbin, which a
/// non-root PATH lacks.
fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .any(|dir| dir.join(tool).is_file())
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u")
        .quiet()
        .read()
        .is_ok_and(|uid| uid.trim() == "0")
}
