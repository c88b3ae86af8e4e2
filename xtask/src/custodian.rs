//! A throwaway copy of the the-custodian-like fixture tree (`tests/fixtures/the-custodian/`) and
//! the hermetic environment `make remote-build` runs in there, for `verify-shim` and
//! `bench-dispatch`. Nothing is ever written into the repository.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context as _;
use tempfile::TempDir;

/// Whether the `sandboxer` CLI is on the PATH a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPath {
    Sandboxer,
    NoSandboxer,
}

pub struct Custodian {
    _temp: TempDir,
    /// `root/infra/build-machines`, where `make remote-build` runs.
    pub build_machines: PathBuf,
    /// Outside the tree: for markers and other files a check makes.
    pub scratch: PathBuf,
    /// Where the fake rsync and ssh record their argv.
    pub records: PathBuf,
    state: PathBuf,
    home: PathBuf,
    path_with: OsString,
    path_without: OsString,
}

impl Custodian {
    /// Copies the fixture tree and prepares PATHs with and without `sandboxer` (a symlink to
    /// `sandboxer_bin`), both with the fake rsync and ssh in front: no build host exists here.
    pub fn new(workspace: &Path, sandboxer_bin: &Path) -> anyhow::Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("sandboxer-custodian-")
            .tempdir()
            .context("creating a temporary directory")?;
        let base = temp.path().canonicalize()?;
        let root = base.join("the-custodian");
        copy_dir(&workspace.join("tests/fixtures/the-custodian"), &root)?;
        let [scratch, records, state, home, with_dir, fakes_dir] = [
            "scratch",
            "records",
            "state",
            "home",
            "bin-sandboxer",
            "bin-fakes",
        ]
        .map(|name| base.join(name));
        for dir in [&scratch, &records, &home, &with_dir, &fakes_dir] {
            std::fs::create_dir_all(dir)?;
        }
        std::os::unix::fs::symlink(sandboxer_bin, with_dir.join("sandboxer"))?;
        for tool in ["rsync", "ssh"] {
            let fake = workspace.join(format!("tests/fixtures/fakes/fake-{tool}"));
            std::os::unix::fs::symlink(&fake, fakes_dir.join(tool))?;
        }
        let system = system_path()?;
        let join = |dirs: Vec<PathBuf>| std::env::join_paths(dirs).context("joining PATH");
        let path_with = join(
            [fakes_dir.clone(), with_dir]
                .into_iter()
                .chain(system.clone())
                .collect(),
        )?;
        let path_without = join(std::iter::once(fakes_dir).chain(system).collect())?;
        Ok(Custodian {
            build_machines: root.join("infra/build-machines"),
            scratch,
            records,
            state,
            home,
            path_with,
            path_without,
            _temp: temp,
        })
    }

    /// `program` in `infra/build-machines` with a clean environment: no MAKEFLAGS from an outer
    /// make, a private HOME and state dir, and PATH as asked.
    pub fn command(&self, program: &str, on_path: OnPath) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .current_dir(&self.build_machines)
            .env(
                "PATH",
                match on_path {
                    OnPath::Sandboxer => &self.path_with,
                    OnPath::NoSandboxer => &self.path_without,
                },
            )
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("SANDBOXER_HOME", &self.state)
            .env("FAKE_RECORD_DIR", &self.records);
        command
    }

    /// `make ARGS` in `infra/build-machines`.
    pub fn make(&self, args: &[&str], on_path: OnPath) -> Command {
        let mut command = self.command("make", on_path);
        command.args(args);
        command
    }

    /// The real `sandboxer ARGS` in `infra/build-machines`, found on PATH as a user would.
    pub fn sandboxer(&self, args: &[&str]) -> Command {
        let mut command = self.command("sandboxer", OnPath::Sandboxer);
        command.args(args);
        command
    }

    /// Every sandbox `sandboxer list --all --json` knows (ended ones too: a failed build that
    /// left nothing behind is not live).
    pub fn sandboxes(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let output = output_of(&mut self.sandboxer(&["list", "--all", "--json"]))?;
        anyhow::ensure!(
            output.status.success(),
            "sandboxer list failed: {}",
            text(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).context("sandboxer list --json is a JSON array")
    }
}

/// Runs a command to completion, capturing its output.
pub fn output_of(command: &mut Command) -> anyhow::Result<Output> {
    command
        .output()
        .with_context(|| format!("running {command:?}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// This process's PATH without directories that hold a `sandboxer` (an installed one must not
/// stand in for the binary under test), checked to still have what the shim needs.
fn system_path() -> anyhow::Result<Vec<PathBuf>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("sandboxer").exists())
        .collect();
    for tool in ["make", "sh", "packer", "tar"] {
        anyhow::ensure!(
            dirs.iter().any(|dir| dir.join(tool).is_file()),
            "`{tool}` is not on PATH (outside directories holding a sandboxer); `cargo xtask setup` installs it"
        );
    }
    Ok(dirs)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
