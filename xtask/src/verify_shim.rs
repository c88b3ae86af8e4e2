//! `cargo xtask verify-shim`: the `make remote-build` shim end to end, with real `make`, real
//! `sh`, real Packer and the `sandboxer` built from this workspace, in a throwaway copy of a
//! the-custodian-like tree. rsync and ssh are the only stand-ins (no build host exists here):
//! fakes that record their argv. One PASS/FAIL line per check; fails if any check failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::custodian::{Custodian, OnPath, output_of, text};
use crate::setup::{self, Purpose};

const GUIDE: &str = "docs/migration-build-machines.md";
/// What the legacy path would have run, as its notice prints it.
const DELEGATED: &str = "sandboxer create --profile profile.vm-haskell-build --input project=demo";
const HOST: &str = "builder.example";
const RSYNC_ARGV: &str = "-a\n--delete\n--\n../../projects/demo/\nbuilder.example:builds/demo/\n";
const SSH_ARGV: &str = "--\nbuilder.example\ncd 'builds/demo' && make build\n";

pub fn run_task(sh: &Shell) -> anyhow::Result<()> {
    setup::run(sh, Purpose::Test)?;
    run(sh)
}

/// verify-shim without the setup step, for `cargo xtask check`, which has done it.
pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let started = Instant::now();
    let sandboxer = build_sandboxer(sh)?;
    let failed = verify(&sh.current_dir(), &sandboxer)?;
    let took = started.elapsed().as_secs_f64();
    ensure!(
        failed == 0,
        "{failed} shim check(s) failed (see FAIL above; {took:.1} s)"
    );
    eprintln!("xtask verify-shim: every check passed in {took:.1} s");
    Ok(())
}

/// Builds the workspace's sandboxer (debug, which `cargo test` has built already) and returns it.
pub fn build_sandboxer(sh: &Shell) -> anyhow::Result<PathBuf> {
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --quiet --locked --package sandboxer").run()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sh.current_dir().join("target"));
    let binary = target.join("debug/sandboxer");
    ensure!(
        binary.is_file(),
        "no sandboxer binary at {}",
        binary.display()
    );
    Ok(binary)
}

/// Runs every check in order (later ones build on the install of earlier ones) and returns how
/// many failed.
pub fn verify(workspace: &Path, sandboxer: &Path) -> anyhow::Result<usize> {
    let tree = Custodian::new(workspace, sandboxer)?;
    let mut verifier = Verifier {
        tree: &tree,
        failed: 0,
    };
    verifier.all()?;
    Ok(verifier.failed)
}

struct Verifier<'a> {
    tree: &'a Custodian,
    failed: usize,
}

impl Verifier<'_> {
    fn check(&mut self, name: &str, result: anyhow::Result<()>) {
        match result {
            Ok(()) => println!("PASS  {name}"),
            Err(err) => {
                self.failed += 1;
                println!(
                    "FAIL  {name}\n      {}",
                    format!("{err:#}").replace('\n', "\n      ")
                );
            }
        }
    }

    fn all(&mut self) -> anyhow::Result<()> {
        let settings_before = self.settings()?;

        let r = self.install();
        self.check(
            "shim install writes remote-build.mk and an executable remote-build.sh, creates nothing else, prints the include line",
            r,
        );
        let r = self.edit_makefile();
        self.check(
            "shim install --edit-makefile adds the include line once and keeps the Makefile's other bytes",
            r,
        );
        let r = self.host_makefile_unchanged(&settings_before);
        self.check(
            "including the shim leaves the default goal, SHELL, .SHELLFLAGS, MAKEFLAGS and .RECIPEPREFIX alone (included last, first, or twice)",
            r,
        );
        let r = self.build_with_sandboxer();
        self.check(
            "make remote-build PROJECT=demo with sandboxer on PATH: a real Packer build, the sandbox is ready in `sandboxer list`",
            r,
        );
        let r = self.failed_build();
        self.check(
            "a failing build (REMOTE_BUILD_INPUTS=var.fail=true) fails make with sandboxer's exit code 1",
            r,
        );
        let r = self.ctrl_c();
        self.check(
            "Ctrl-C in make cancels the build through sandboxer: the sandbox is cancelled, make fails",
            r,
        );
        let r = self.legacy(OnPath::NoSandboxer, &[]);
        self.check(
            "without sandboxer on PATH: the legacy path prints the notice, the sandboxer command and the guide, then runs rsync and ssh with exactly the expected arguments",
            r,
        );
        let r = self.legacy(OnPath::Sandboxer, &["REMOTE_BUILD_LEGACY=1"]);
        self.check(
            "REMOTE_BUILD_LEGACY=1 takes the legacy path even with sandboxer on PATH",
            r,
        );
        let r = self.legacy_without_host();
        self.check(
            "the legacy path without BUILD_HOST is a clear error, and nothing is run",
            r,
        );
        let r = self.legacy_exit_code();
        self.check(
            "the legacy path's exit codes reach make unchanged (ssh exits 7: make reports Error 7)",
            r,
        );
        let r = self.missing_project();
        self.check("a missing or empty PROJECT is refused with a usage line", r);
        for (label, value) in hostile_projects(&self.tree.scratch.join("pwned")) {
            let r = self.hostile(&value);
            self.check(
                &format!(
                    "PROJECT={label} is refused, nothing runs (command line and environment, with and without sandboxer)"
                ),
                r,
            );
        }
        let r = self.sandboxer_refuses_hostile_project();
        self.check(
            "sandboxer itself refuses --input 'project=x;touch ...' for profile.vm-haskell-build",
            r,
        );
        let r = self.check_edit_refuse_force();
        self.check(
            "shim check passes, fails after a hand edit; install refuses with a diff; --force restores",
            r,
        );
        let r = self.shellcheck();
        self.check("shellcheck passes on the installed remote-build.sh", r);
        Ok(())
    }

    /// What the host Makefile's `settings` target prints.
    fn settings(&self) -> anyhow::Result<String> {
        let output = output_of(
            &mut self
                .tree
                .make(&["--no-print-directory", "settings"], OnPath::Sandboxer),
        )?;
        ensure!(
            output.status.success(),
            "make settings: {}",
            text(&output.stderr)
        );
        Ok(text(&output.stdout))
    }

    fn listing(&self) -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.tree.build_machines)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<anyhow::Result<_>>()?;
        names.sort();
        Ok(names)
    }

    fn install(&self) -> anyhow::Result<()> {
        let before = self.listing()?;
        let makefile = std::fs::read(self.tree.build_machines.join("Makefile"))?;
        let output = output_of(&mut self.tree.sandboxer(&["shim", "install", "--dest", "."]))?;
        succeeded(&output)?;
        ensure!(
            text(&output.stdout) == "include remote-build.mk\n",
            "stdout should be the include line, is {:?}",
            text(&output.stdout)
        );
        let mut expected = before;
        expected.extend(["remote-build.mk".to_owned(), "remote-build.sh".to_owned()]);
        expected.sort();
        ensure!(
            self.listing()? == expected,
            "directory holds {:?}",
            self.listing()?
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(self.tree.build_machines.join("remote-build.sh"))?
            .permissions()
            .mode();
        ensure!(mode & 0o111 == 0o111, "remote-build.sh has mode {mode:o}");
        ensure!(
            std::fs::read(self.tree.build_machines.join("Makefile"))? == makefile,
            "install without --edit-makefile changed the Makefile"
        );
        Ok(())
    }

    fn edit_makefile(&self) -> anyhow::Result<()> {
        let path = self.tree.build_machines.join("Makefile");
        let original = std::fs::read_to_string(&path)?;
        let install = || {
            output_of(&mut self.tree.sandboxer(&[
                "shim",
                "install",
                "--dest",
                ".",
                "--edit-makefile",
            ]))
        };
        let output = install()?;
        succeeded(&output)?;
        ensure!(
            output.stdout.is_empty(),
            "printed {:?}",
            text(&output.stdout)
        );
        let edited = std::fs::read_to_string(&path)?;
        let added = edited
            .strip_prefix(&original)
            .context("the Makefile's original bytes are not kept at its start")?;
        ensure!(
            added
                .lines()
                .filter(|line| *line == "include remote-build.mk")
                .count()
                == 1,
            "added {added:?}"
        );
        succeeded(&install()?)?;
        ensure!(
            std::fs::read_to_string(&path)? == edited,
            "a second --edit-makefile changed the Makefile again"
        );
        Ok(())
    }

    fn host_makefile_unchanged(&self, before: &str) -> anyhow::Result<()> {
        let after = self.settings()?;
        ensure!(
            after == before,
            "make settings printed\n{before}before and\n{after}after"
        );
        let output = output_of(&mut self.tree.make(&[], OnPath::Sandboxer))?;
        succeeded(&output)?;
        ensure!(
            text(&output.stdout).starts_with("build-machines: "),
            "plain `make` no longer runs the Makefile's default goal (help): {}",
            text(&output.stdout)
        );
        // Included before any target, and twice: the first target after it is still the default
        // goal, and the guard keeps make from warning about a redefined recipe.
        std::fs::write(
            self.tree.build_machines.join("first.mk"),
            "include remote-build.mk\ninclude remote-build.mk\nhello:\n\t@echo hello from first.mk\n",
        )?;
        let output = output_of(&mut self.tree.make(&["-f", "first.mk"], OnPath::Sandboxer));
        std::fs::remove_file(self.tree.build_machines.join("first.mk"))?;
        let output = output?;
        succeeded(&output)?;
        ensure!(
            text(&output.stdout) == "hello from first.mk\n",
            "default goal with the shim included first: {}",
            text(&output.stdout)
        );
        ensure!(
            output.stderr.is_empty(),
            "make warned: {}",
            text(&output.stderr)
        );
        Ok(())
    }

    fn build_with_sandboxer(&self) -> anyhow::Result<()> {
        let before = self.tree.sandboxes()?;
        let output = self.remote_build(&["PROJECT=demo"], OnPath::Sandboxer)?;
        succeeded(&output)?;
        self.fakes_not_called()?;
        let after = self.tree.sandboxes()?;
        let record = created(&before, &after)?;
        ensure!(record["state"] == "ready", "sandbox is {}", record["state"]);
        ensure!(
            record["profile"] == "profile.vm-haskell-build",
            "profile {}",
            record["profile"]
        );
        ensure!(
            record["inputs"]["project"] == "demo",
            "inputs {}",
            record["inputs"]
        );
        let ova = record["artifacts"][0]["path"]
            .as_str()
            .context("the sandbox has no artifact")?;
        ensure!(ova.ends_with("haskell-build-demo.ova"), "artifact {ova}");
        let listing = output_of(std::process::Command::new("tar").args(["-tf", ova]))?;
        ensure!(
            text(&listing.stdout).contains("./src/Main.hs"),
            "the OVA does not hold the project's sources: {}",
            text(&listing.stdout)
        );
        Ok(())
    }

    fn failed_build(&self) -> anyhow::Result<()> {
        let before = self.tree.sandboxes()?;
        let output = self.remote_build(
            &["PROJECT=demo", "REMOTE_BUILD_INPUTS=var.fail=true"],
            OnPath::Sandboxer,
        )?;
        ensure!(!output.status.success(), "make succeeded");
        let stderr = text(&output.stderr);
        ensure!(
            stderr.contains("build failed on purpose"),
            "stderr: {stderr}"
        );
        ensure!(
            stderr.contains("] Error 1"),
            "make did not report sandboxer's exit code 1: {stderr}"
        );
        let after = self.tree.sandboxes()?;
        let record = created(&before, &after)?;
        ensure!(
            record["state"] == "failed",
            "sandbox is {}",
            record["state"]
        );
        ensure!(
            record["inputs"]["var.fail"] == "true",
            "inputs {}",
            record["inputs"]
        );
        Ok(())
    }

    fn ctrl_c(&self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt as _;
        let before = self.tree.sandboxes()?;
        let log = self.tree.scratch.join("ctrl-c.log");
        let mut command = self.tree.make(
            &[
                "remote-build",
                "PROJECT=demo",
                "REMOTE_BUILD_INPUTS=var.sleep_seconds=60",
            ],
            OnPath::Sandboxer,
        );
        // Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(&log)?);
        let mut make = command.spawn().context("starting make")?;
        let result = self.interrupt_when_building(&mut make, &before);
        if result.is_err() {
            let _ = make.kill();
            let _ = make.wait();
        }
        result.with_context(|| {
            format!(
                "make's output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    fn interrupt_when_building(&self, make: &mut Child, before: &[Value]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Packer is running once the template's first step has said so in the provision log.
        loop {
            ensure!(Instant::now() < deadline, "the build never started");
            ensure!(
                make.try_wait()?.is_none(),
                "make exited before it was interrupted"
            );
            let sandboxes = self.tree.sandboxes()?;
            if let Ok(record) = created(before, &sandboxes) {
                let log = record["log"].as_str().map(std::fs::read_to_string);
                if let Some(Ok(log)) = log
                    && log.contains("building demo")
                {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pgid = rustix::process::Pid::from_raw(make.id() as i32).context("make's pid")?;
        let interrupted = Instant::now();
        rustix::process::kill_process_group(pgid, rustix::process::Signal::INT)
            .context("sending SIGINT to make's process group")?;
        let status = loop {
            if let Some(status) = make.try_wait()? {
                break status;
            }
            ensure!(
                interrupted.elapsed() < Duration::from_secs(20),
                "make still runs 20 s after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        ensure!(!status.success(), "make succeeded after Ctrl-C");
        let after = self.tree.sandboxes()?;
        let record = created(before, &after)?;
        ensure!(
            record["state"] == "cancelled",
            "sandbox is {}",
            record["state"]
        );
        Ok(())
    }

    fn legacy(&self, on_path: OnPath, extra: &[&str]) -> anyhow::Result<()> {
        let before = self.tree.sandboxes()?.len();
        let mut args = vec!["PROJECT=demo", "BUILD_HOST=builder.example"];
        args.extend(extra);
        let output = self.remote_build(&args, on_path)?;
        succeeded(&output)?;
        let stderr = text(&output.stderr);
        for expected in [
            "deprecated legacy path",
            &format!("remote-build:   {DELEGATED}\n"),
            GUIDE,
        ] {
            ensure!(
                stderr.contains(expected),
                "stderr lacks {expected:?}:\n{stderr}"
            );
        }
        ensure!(
            self.recorded("rsync")? == RSYNC_ARGV,
            "rsync argv {:?}",
            self.recorded("rsync")?
        );
        ensure!(
            self.recorded("ssh")? == SSH_ARGV,
            "ssh argv {:?}",
            self.recorded("ssh")?
        );
        ensure!(
            self.tree.sandboxes()?.len() == before,
            "the legacy path created a sandbox"
        );
        Ok(())
    }

    fn legacy_without_host(&self) -> anyhow::Result<()> {
        let output = self.remote_build(&["PROJECT=demo"], OnPath::NoSandboxer)?;
        ensure!(!output.status.success(), "make succeeded");
        let stderr = text(&output.stderr);
        ensure!(stderr.contains("BUILD_HOST is not set"), "stderr: {stderr}");
        self.fakes_not_called()
    }

    fn legacy_exit_code(&self) -> anyhow::Result<()> {
        let mut command = self.tree.make(
            &[
                "remote-build",
                "PROJECT=demo",
                &format!("BUILD_HOST={HOST}"),
            ],
            OnPath::NoSandboxer,
        );
        command.env("FAKE_SSH_EXIT", "7");
        self.clear_records()?;
        let output = output_of(&mut command)?;
        ensure!(!output.status.success(), "make succeeded");
        let stderr = text(&output.stderr);
        ensure!(stderr.contains("] Error 7"), "stderr: {stderr}");
        Ok(())
    }

    fn missing_project(&self) -> anyhow::Result<()> {
        for args in [&[][..], &["PROJECT="][..]] {
            for on_path in [OnPath::Sandboxer, OnPath::NoSandboxer] {
                let output = self.remote_build(args, on_path)?;
                ensure!(!output.status.success(), "make {args:?} succeeded");
                let stderr = text(&output.stderr);
                ensure!(
                    stderr.contains("PROJECT is missing")
                        && stderr.contains("usage: make remote-build PROJECT=NAME"),
                    "stderr: {stderr}"
                );
                ensure!(stderr.contains("] Error 2"), "not exit code 2: {stderr}");
                self.fakes_not_called()?;
            }
        }
        Ok(())
    }

    fn hostile(&self, value: &str) -> anyhow::Result<()> {
        let marker = self.tree.scratch.join("pwned");
        let before = self.tree.sandboxes()?.len();
        for on_path in [OnPath::Sandboxer, OnPath::NoSandboxer] {
            for on_command_line in [true, false] {
                self.clear_records()?;
                let assignment = format!("PROJECT={value}");
                let host = format!("BUILD_HOST={HOST}");
                let mut command = if on_command_line {
                    self.tree
                        .make(&["remote-build", &assignment, &host], on_path)
                } else {
                    let mut command = self.tree.make(&["remote-build", &host], on_path);
                    command.env("PROJECT", value);
                    command
                };
                let output = output_of(&mut command)?;
                let how = format!(
                    "{} {}",
                    if on_command_line {
                        "on the command line"
                    } else {
                        "in the environment"
                    },
                    match on_path {
                        OnPath::Sandboxer => "with sandboxer",
                        OnPath::NoSandboxer => "without sandboxer",
                    }
                );
                if marker.exists() {
                    // Removed, so that the checks after this one still mean something.
                    std::fs::remove_file(&marker)?;
                    bail!("{how}: the value ran: it created {}", marker.display());
                }
                ensure!(!output.status.success(), "{how}: make succeeded");
                let stderr = text(&output.stderr);
                ensure!(
                    stderr.contains("remote-build: PROJECT is not a valid project name")
                        || stderr.contains("remote-build: PROJECT is longer than 64"),
                    "{how}: stderr: {stderr}"
                );
                self.fakes_not_called().with_context(|| how.clone())?;
            }
        }
        ensure!(
            self.tree.sandboxes()?.len() == before,
            "a hostile PROJECT created a sandbox"
        );
        Ok(())
    }

    fn sandboxer_refuses_hostile_project(&self) -> anyhow::Result<()> {
        let marker = self.tree.scratch.join("pwned");
        let before = self.tree.sandboxes()?.len();
        let input = format!("project=x;touch {}", marker.display());
        let output = output_of(&mut self.tree.sandboxer(&[
            "create",
            "--profile",
            "profile.vm-haskell-build",
            "--input",
            &input,
        ]))?;
        ensure!(output.status.code() == Some(2), "exit {:?}", output.status);
        let stderr = text(&output.stderr);
        ensure!(stderr.contains("input `project`"), "stderr: {stderr}");
        ensure!(!marker.exists(), "the value ran");
        ensure!(
            self.tree.sandboxes()?.len() == before,
            "a sandbox was created"
        );
        Ok(())
    }

    fn check_edit_refuse_force(&self) -> anyhow::Result<()> {
        let shim = |args: &[&str]| {
            let mut all = vec!["shim"];
            all.extend(args);
            all.extend(["--dest", "."]);
            output_of(&mut self.tree.sandboxer(&all))
        };
        succeeded(&shim(&["check"])?).context("shim check on the fresh install")?;

        let mk = self.tree.build_machines.join("remote-build.mk");
        let generated = std::fs::read_to_string(&mk)?;
        let edited = generated.replace("BUILD_DIR ?= builds", "BUILD_DIR ?= /srv/builds");
        ensure!(edited != generated, "the edit changed nothing");
        std::fs::write(&mk, &edited)?;

        let output = shim(&["check"])?;
        ensure!(
            output.status.code() == Some(1),
            "check after an edit: exit {:?}",
            output.status
        );
        let stdout = text(&output.stdout);
        ensure!(
            stdout.contains("edited   ./remote-build.mk: edited by hand"),
            "check does not name the edited file: {stdout}"
        );

        let output = shim(&["install"])?;
        ensure!(
            output.status.code() == Some(1),
            "install over an edit: exit {:?}",
            output.status
        );
        let stderr = text(&output.stderr);
        ensure!(
            stderr.contains("refusing to overwrite ./remote-build.mk")
                && stderr.contains("+BUILD_DIR ?= /srv/builds"),
            "install does not refuse with a diff: {stderr}"
        );
        ensure!(
            std::fs::read_to_string(&mk)? == edited,
            "the refused install wrote"
        );

        succeeded(&shim(&["install", "--force"])?)?;
        ensure!(
            std::fs::read_to_string(&mk)? == generated,
            "--force did not restore the file"
        );
        succeeded(&shim(&["check"])?).context("shim check after --force")?;
        Ok(())
    }

    fn shellcheck(&self) -> anyhow::Result<()> {
        let output = output_of(
            std::process::Command::new("shellcheck")
                .arg(self.tree.build_machines.join("remote-build.sh")),
        )?;
        ensure!(output.status.success(), "{}", text(&output.stdout));
        Ok(())
    }

    /// `make remote-build ARGS`, with fresh fake records.
    fn remote_build(&self, args: &[&str], on_path: OnPath) -> anyhow::Result<Output> {
        self.clear_records()?;
        let mut all = vec!["remote-build"];
        all.extend(args);
        output_of(&mut self.tree.make(&all, on_path))
    }

    fn clear_records(&self) -> anyhow::Result<()> {
        for tool in ["rsync", "ssh"] {
            match std::fs::remove_file(self.tree.records.join(format!("{tool}.argv"))) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// What a fake recorded since the last [`Self::clear_records`]; empty if it was not called.
    fn recorded(&self, tool: &str) -> anyhow::Result<String> {
        match std::fs::read_to_string(self.tree.records.join(format!("{tool}.argv"))) {
            Ok(argv) => Ok(argv),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(err) => Err(err.into()),
        }
    }

    fn fakes_not_called(&self) -> anyhow::Result<()> {
        for tool in ["rsync", "ssh"] {
            let argv = self.recorded(tool)?;
            ensure!(argv.is_empty(), "{tool} was called with {argv:?}");
        }
        Ok(())
    }
}

fn succeeded(output: &Output) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// The one sandbox in `after` that is not in `before`.
fn created<'a>(before: &[Value], after: &'a [Value]) -> anyhow::Result<&'a Value> {
    let new: Vec<&Value> = after
        .iter()
        .filter(|record| !before.iter().any(|old| old["id"] == record["id"]))
        .collect();
    match new.as_slice() {
        [record] => Ok(record),
        _ => bail!("expected one new sandbox, found {}", new.len()),
    }
}

/// `(label, value)`: values that would run `touch MARKER` if any layer evaluated them, and
/// names the pattern refuses.
fn hostile_projects(marker: &Path) -> Vec<(String, String)> {
    let marker = marker.display();
    vec![
        ("'x;touch …'".into(), format!("x;touch {marker}")),
        ("'$(touch …)'".into(), format!("$(touch {marker})")),
        ("'`touch …`'".into(), format!("`touch {marker}`")),
        ("'a<newline>touch …'".into(), format!("a\ntouch {marker}")),
        (
            "'$(shell touch …)' (make syntax)".into(),
            format!("$(shell touch {marker})"),
        ),
        ("'-rf'".into(), "-rf".into()),
        ("'.hidden'".into(), ".hidden".into()),
        ("'../demo'".into(), "../demo".into()),
        ("65 characters".into(), "a".repeat(65)),
    ]
}
