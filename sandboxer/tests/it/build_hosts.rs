//! Builds placed on a pool of build hosts: each host a real `sshd` of its own (its own host
//! key, work directory and `max_concurrent`) on its own loopback address, with the real Packer
//! and the real rsync behind it. The hosts' process tables are read to check what ran where.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::common::{
    Run, Sandboxer, fixtures, processes_mentioning, require_tool, signal, wait_until,
};
use crate::sshd::Sshd;

/// A build host made by a test: an sshd on its own loopback address, and a work directory.
struct BuildHost {
    name: String,
    sshd: Sshd,
    workdir: PathBuf,
    max_concurrent: Option<u32>,
    labels: Vec<String>,
    /// Kept so the work directory outlives the host.
    _dir: tempfile::TempDir,
}

impl BuildHost {
    /// A host named `name` on 127.0.0.`n`, holding at most `max_concurrent` builds.
    fn start(name: &str, n: u8, max_concurrent: Option<u32>) -> BuildHost {
        BuildHost::start_with(name, n, max_concurrent, "work", &[])
    }

    /// The same, its work directory named `workdir` (below a fresh temporary directory), its
    /// sessions started with `env` (where `{workdir}` in a value is the work directory).
    fn start_with(
        name: &str,
        n: u8,
        max_concurrent: Option<u32>,
        workdir: &str,
        env: &[(&str, &str)],
    ) -> BuildHost {
        require_tool("rsync");
        require_tool("packer");
        let dir = tempfile::Builder::new()
            .prefix("sandboxer-build-host-")
            .tempdir()
            .unwrap();
        let workdir = dir.path().canonicalize().unwrap().join(workdir);
        std::fs::create_dir_all(&workdir).unwrap();
        let env: Vec<(&str, String)> = env
            .iter()
            .map(|(name, value)| (*name, value.replace("{workdir}", workdir.to_str().unwrap())))
            .collect();
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        BuildHost {
            name: name.to_owned(),
            sshd: Sshd::start_on(&format!("127.0.0.{n}"), &env),
            workdir,
            max_concurrent,
            labels: Vec::new(),
            _dir: dir,
        }
    }

    fn labelled(mut self, labels: &[&str]) -> BuildHost {
        self.labels = labels.iter().map(|label| label.to_string()).collect();
        self
    }

    /// Its `[[host]]` table.
    fn pool_entry(&self) -> String {
        let mut entry = format!(
            "[[host]]\nname = {:?}\nssh = \"{}@{}:{}\"\nidentity = {:?}\nworkdir = {:?}\n",
            self.name,
            self.sshd.user,
            self.sshd.address(),
            self.sshd.port(),
            self.sshd.client_key.display().to_string(),
            self.workdir.display().to_string(),
        );
        if let Some(max) = self.max_concurrent {
            entry.push_str(&format!("max_concurrent = {max}\n"));
        }
        if !self.labels.is_empty() {
            entry.push_str(&format!("labels = {:?}\n", self.labels));
        }
        entry
    }

    /// Packer builds running on the host now.
    fn builds_running(&self) -> usize {
        builds_running_in(&self.workdir)
    }

    /// Every process still about a build on this host: its work directory in its command
    /// line or environment (the agent, Packer and what it runs, the local ssh and rsync).
    fn leftovers(&self) -> Vec<String> {
        processes_mentioning(self.workdir.to_str().unwrap())
    }

    /// Build directories left in its work directory.
    fn build_dirs(&self) -> Vec<String> {
        std::fs::read_dir(&self.workdir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// The host dies: its sshd, every session and every build process, at once.
    fn kill(&mut self) {
        let mut doomed: HashSet<u32> = descendants(self.sshd.pid());
        doomed.insert(self.sshd.pid());
        for (pid, dir) in proc_entries() {
            let cwd = std::fs::read_link(dir.join("cwd")).unwrap_or_default();
            let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
            let workdir = self.workdir.to_str().unwrap().as_bytes();
            if cwd.starts_with(&self.workdir)
                || environ
                    .windows(workdir.len())
                    .any(|window| window == workdir)
            {
                doomed.insert(pid);
            }
        }
        // Only what runs on the "host": never this test, never a local sandboxer or ssh.
        doomed.remove(&std::process::id());
        for pid in doomed {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        self.sshd.stop_listening();
    }
}

/// Packer builds running in `workdir` now, read from the process table: distinct process
/// groups of `packer` processes working below it.
fn builds_running_in(workdir: &Path) -> usize {
    let mut groups = HashSet::new();
    for (pid, dir) in proc_entries() {
        let Ok(cwd) = std::fs::read_link(dir.join("cwd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if cwd.starts_with(workdir)
            && comm.trim_end() == "packer"
            && let Some(pgid) = pgid_of(pid)
        {
            groups.insert(pgid);
        }
    }
    groups.len()
}

fn proc_entries() -> Vec<(u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            Some((pid, entry.path()))
        })
        .collect()
}

/// (state, ppid, pgid) from `/proc/<pid>/stat`.
fn stat_of(pid: u32) -> Option<(String, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.to_string(),
        fields.get(1)?.parse().ok()?,
        fields.get(2)?.parse().ok()?,
    ))
}

fn pgid_of(pid: u32) -> Option<u32> {
    stat_of(pid)
        .filter(|(state, _, _)| state != "Z")
        .map(|(_, _, pgid)| pgid)
}

/// Every process below `root` in the process tree.
fn descendants(root: u32) -> HashSet<u32> {
    let parents: Vec<(u32, u32)> = proc_entries()
        .into_iter()
        .filter_map(|(pid, _)| stat_of(pid).map(|(_, ppid, _)| (pid, ppid)))
        .collect();
    let mut found = HashSet::from([root]);
    loop {
        let before = found.len();
        for (pid, ppid) in &parents {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            found.remove(&root);
            return found;
        }
    }
}

/// A control machine: a sandboxer with its own state directory, whose pool file lists `hosts`.
fn control_machine(hosts: &[&BuildHost]) -> Sandboxer {
    let sandboxer = Sandboxer::new();
    write_pool(&sandboxer, hosts, "");
    sandboxer
}

/// Writes the pool file where sandboxer looks by default, `extra` appended.
fn write_pool(sandboxer: &Sandboxer, hosts: &[&BuildHost], extra: &str) {
    let dir = sandboxer.root().join("config/sandboxer");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text: String = hosts.iter().map(|host| host.pool_entry() + "\n").collect();
    text.push_str(extra);
    std::fs::write(dir.join("hosts.toml"), text).unwrap();
}

fn template(name: &str) -> String {
    fixtures()
        .join("templates")
        .join(name)
        .join(format!("{name}.pkr.hcl"))
        .display()
        .to_string()
}

/// A build-mode profile placing `template` on the pool (`pool = true`, with `labels`).
fn pool_profile(
    sandboxer: &Sandboxer,
    id: &str,
    template_name: &str,
    extra_inputs: &str,
    labels: &[&str],
) {
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("labels = {labels:?}\n")
    };
    sandboxer.write_profile(
        &format!("{id}.toml"),
        &format!(
            r#"id = "profile.{id}"
description = "a build on the pool"
extension = "ext.vm-packer"
ttl = "1h"

[placement]
pool = true
{labels}
[inputs]
mode = "build"
packer_template = "{}"
vm_name = "pooled"
{extra_inputs}
"#,
            template(template_name)
        ),
    );
}

/// Watches the hosts' process tables from a thread: the most builds each ran at once.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<usize>>,
}

impl Sampler {
    fn watch(hosts: &[&BuildHost]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let workdirs: Vec<PathBuf> = hosts.iter().map(|host| host.workdir.clone()).collect();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut most = vec![0; workdirs.len()];
                while !stop.load(Ordering::SeqCst) {
                    for (at, workdir) in workdirs.iter().enumerate() {
                        most[at] = most[at].max(builds_running_in(workdir));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                most
            })
        };
        Sampler { stop, thread }
    }

    fn most(self) -> Vec<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn sha256_of(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// Waits until the sandbox's build runs on `host` (a Packer group there).
fn wait_for_build_on(host: &BuildHost) {
    wait_until(
        Duration::from_secs(60),
        "a build running on the host",
        || (host.builds_running() > 0).then_some(()),
    );
}

/// Waits until the sleeping template's provisioner sleeps on the host (its log says so).
fn wait_for_the_provisioner_to_sleep(sandboxer: &Sandboxer, id: &str) {
    wait_until(Duration::from_secs(60), "the provisioner to sleep", || {
        std::fs::read_to_string(sandboxer.sandbox_dir(id).join("provision.log"))
            .is_ok_and(|log| log.contains("sleeping 300s"))
            .then_some(())
    });
}

/// Waits until no process of a build is left on `host`.
fn assert_nothing_left_on(host: &BuildHost) {
    wait_until(
        Duration::from_secs(10),
        "every process of the build on the host to end",
        || host.leftovers().is_empty().then_some(()),
    );
}

#[test]
fn a_remote_build_copies_its_ova_back_verified_with_every_value_intact() {
    // A work directory and a var file whose names a shell would take apart, and a value that
    // would run a command if any shell on the way read it.
    let pwned = std::env::temp_dir().join(format!("sandboxer-pwned-{}", std::process::id()));
    let hostile_dir = format!("work dir/it's $(touch {})", pwned.display());
    let host = BuildHost::start_with("b1", 2, Some(1), &hostile_dir, &[]);
    let sandboxer = control_machine(&[&host]);
    let greeting = format!(
        "$(touch {pwned}) `touch {pwned}` 'single' \"double\" \\ ; && |\nsecond line",
        pwned = pwned.display()
    );
    // Read by a shell, this name would fall apart (and run `id`): the build would not find it.
    let var_file_name = "odd 'name' $(id) ;.pkrvars.hcl";
    std::fs::write(
        sandboxer.cwd().join(var_file_name),
        "from_file = \"from a file with an odd name\"\n",
    )
    .unwrap();
    pool_profile(&sandboxer, "remote", "remote", "", &[]);
    let run = sandboxer
        .run(&[
            "create",
            "--profile",
            "remote",
            "--json",
            "-i",
            &format!("var.greeting={greeting}"),
            "-i",
            &format!("var_files={var_file_name}"),
        ])
        .success()
        .stderr_contains("provisioning on `b1`")
        .stderr_contains("on build host `b1` (")
        .stderr_contains("copying 1 artifact back from build host `b1`");
    let record = run.json();
    assert_eq!(record["state"], "ready");
    assert_eq!(record["placement"]["host"], "b1");
    assert_eq!(record["build_host"]["host"], "b1");
    assert_eq!(record["build_host"]["dir_left"], false, "{record:#}");
    assert!(record["build_host"]["processes"].is_null(), "{record:#}");
    let id = record["id"].as_str().unwrap();

    let artifacts = record["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{record:#}");
    let ova = Path::new(artifacts[0]["path"].as_str().unwrap());
    assert_eq!(
        ova,
        sandboxer.sandbox_dir(id).join("output/pooled.ova"),
        "copied into the sandbox's output directory"
    );
    assert_eq!(artifacts[0]["sha256"], sha256_of(ova), "verified here");
    assert_eq!(artifacts[0]["build"], "file.remote");
    assert_eq!(
        std::fs::read_to_string(ova).unwrap(),
        format!("greeting={greeting}\nfrom_file=from a file with an odd name\n"),
        "every value reached Packer on the host exactly as given"
    );
    assert!(!pwned.exists(), "a shell on the way ran a value");
    assert_eq!(
        host.build_dirs(),
        Vec::<String>::new(),
        "the build's directory is removed"
    );
    assert_nothing_left_on(&host);
    let log = std::fs::read_to_string(sandboxer.sandbox_dir(id).join("provision.log")).unwrap();
    assert!(log.contains("on build host `b1`"), "{log}");
    assert!(
        log.contains("file.remote,artifact-count,1"),
        "streamed into the log: {log}"
    );
}

#[test]
fn secrets_reach_a_build_host_in_a_private_file_removed_after_the_run() {
    let host = BuildHost::start("b1", 3, Some(1));
    let sandboxer = control_machine(&[&host]);
    let gate = sandboxer.root().join("gate");
    pool_profile(
        &sandboxer,
        "gated",
        "gate",
        &format!("\"var.gate\" = {:?}\n", gate.display().to_string()),
        &[],
    );
    let mut build = sandboxer.start(&[
        "create",
        "--profile",
        "gated",
        "-i",
        "var.token=s3cret-on-host",
    ]);
    build.wait_for_stderr("build started");
    let id = sandboxer.wait_for_state("provisioning");
    let secrets = host.workdir.join(&id).join("secrets/sensitive-vars.json");
    let mode = std::fs::metadata(&secrets)
        .unwrap_or_else(|err| panic!("{}: {err}", secrets.display()))
        .permissions();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(mode.mode() & 0o777, 0o600, "private on the host");
    let record = sandboxer.stored_record(&id);
    assert!(
        record["build_host"]["processes"]["pgid"].is_u64(),
        "the record names Packer's group on the host: {record:#}"
    );
    std::fs::write(&gate, "").unwrap();
    let run = build.finish_within(Duration::from_secs(120)).success();
    assert!(!secrets.exists(), "removed after the run");
    assert!(!run.stderr.contains("s3cret-on-host"), "{}", run.describe());
    let log = std::fs::read_to_string(sandboxer.sandbox_dir(&id).join("provision.log")).unwrap();
    assert!(log.contains("build started"), "{log}");
    assert!(!log.contains("s3cret-on-host"), "{log}");
    assert!(
        !std::fs::read_to_string(sandboxer.sandbox_dir(&id).join("record.json"))
            .unwrap()
            .contains("s3cret-on-host")
    );
    assert_nothing_left_on(&host);
}

#[test]
fn six_builds_over_three_hosts_never_exceed_a_hosts_cap() {
    let hosts = [
        BuildHost::start("b1", 4, Some(2)),
        BuildHost::start("b2", 5, Some(1)),
        BuildHost::start("b3", 6, Some(1)),
    ];
    let all: Vec<&BuildHost> = hosts.iter().collect();
    let sandboxer = control_machine(&all);
    pool_profile(
        &sandboxer,
        "sleep",
        "sleep",
        "\"var.seconds\" = \"3\"\n",
        &[],
    );
    let watching = Sampler::watch(&all);
    let builds: Vec<_> = (0..6)
        .map(|_| sandboxer.start(&["create", "--profile", "sleep", "--json"]))
        .collect();
    let runs: Vec<Run> = builds
        .into_iter()
        .map(|build| build.finish_within(Duration::from_secs(240)).success())
        .collect();
    let most = watching.most();
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let record = run.json();
        *placed
            .entry(record["placement"]["host"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        most[0] <= 2 && most[1] <= 1 && most[2] <= 1,
        "a host ran more builds at once than its cap: {most:?} (caps 2/1/1)"
    );
    assert_eq!(most[0], 2, "b1 ran two at once: {most:?}");
    assert_eq!(
        placed.keys().cloned().collect::<Vec<_>>(),
        ["b1", "b2", "b3"],
        "spread over every host: {placed:?}"
    );
    assert!(
        runs.iter().any(|run| run
            .stderr
            .contains("waiting for a free placement slot in the pool")
            || run
                .stderr
                .contains("waiting for a placement slot in the pool")),
        "two of six waited in line"
    );
    for host in &hosts {
        assert_nothing_left_on(host);
    }
}

#[test]
fn two_control_machines_sharing_a_pool_never_overbook_a_host() {
    let host = BuildHost::start("shared", 7, Some(1));
    // Two state directories: no lock file of one is seen by the other, only the slot on the host.
    let first = control_machine(&[&host]);
    let second = control_machine(&[&host]);
    for sandboxer in [&first, &second] {
        pool_profile(
            sandboxer,
            "sleep",
            "sleep",
            "\"var.seconds\" = \"3\"\n",
            &[],
        );
    }
    let watching = Sampler::watch(&[&host]);
    let one = first.start(&["create", "--profile", "sleep", "--json"]);
    let two = second.start(&["create", "--profile", "sleep", "--json"]);
    let runs = [
        one.finish_within(Duration::from_secs(120)).success(),
        two.finish_within(Duration::from_secs(120)).success(),
    ];
    let most = watching.most();
    assert_eq!(most, [1], "two builds ran at once on a host with one slot");
    assert!(
        runs.iter().any(|run| run.stderr.contains(
            "build host `shared` is full: other control machines' builds hold its slots"
        )),
        "one waited for the other's slot on the host:\n{}\n{}",
        runs[0].describe(),
        runs[1].describe()
    );
    assert_nothing_left_on(&host);
}

#[test]
fn a_host_whose_sshd_is_down_is_skipped_with_a_warning() {
    let mut down = BuildHost::start("down", 8, Some(1));
    down.sshd.stop_listening();
    // This one answers, but has no Packer: as unusable as one that does not answer.
    let no_packer = BuildHost::start("no-packer", 18, Some(1));
    let up = BuildHost::start("up", 9, Some(1));
    let sandboxer = control_machine(&[]);
    write_pool(
        &sandboxer,
        &[&down],
        &format!(
            "{}packer = \"/nonexistent/packer\"\n\n{}",
            no_packer.pool_entry(),
            up.pool_entry()
        ),
    );
    pool_profile(
        &sandboxer,
        "sleep",
        "sleep",
        "\"var.seconds\" = \"0\"\n",
        &[],
    );
    let run = sandboxer
        .run(&["create", "--profile", "sleep", "--progress=jsonl"])
        .success()
        .stderr_contains("warning: cannot reach build host `down`")
        .stderr_contains("(connection refused); skipping `down`")
        .stderr_contains("warning: build host `no-packer`: packer (/nonexistent/packer) is not on the build host's PATH")
        .stderr_contains("skipping `no-packer`");
    // The events of a build on a host are those of a build here: Packer's steps, the end.
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|event| {
            event["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("dev.sandboxer.sandbox.")
        })
        .collect();
    for expected in [
        "provisioning.started",
        "step.started",
        "step.finished",
        "finished",
    ] {
        assert!(types.contains(&expected), "no {expected} event: {types:?}");
    }
    let started = events
        .iter()
        .find(|event| event["type"] == "dev.sandboxer.sandbox.provisioning.started")
        .unwrap();
    assert_eq!(started["data"]["placement_host"], "up", "{started}");
    assert_nothing_left_on(&no_packer);

    // With no host left to try, the create fails and says why for each.
    let sandboxer = control_machine(&[&down]);
    pool_profile(&sandboxer, "remote", "remote", "", &[]);
    sandboxer
        .run(&["create", "--profile", "remote"])
        .code(1)
        .error_contains("the placement host could not be used: cannot reach build host `down`");
}

#[test]
fn a_host_killed_mid_build_fails_the_sandbox_naming_it_and_frees_its_slot() {
    let mut host = BuildHost::start("doomed", 10, Some(1));
    let sandboxer = control_machine(&[&host]);
    pool_profile(
        &sandboxer,
        "sleep",
        "sleep",
        "\"var.seconds\" = \"300\"\n",
        &[],
    );
    let build = sandboxer.start(&["create", "--profile", "sleep", "--json"]);
    wait_for_build_on(&host);
    host.kill();
    let run = build.finish_within(Duration::from_secs(60)).code(1);
    let id = sandboxer.ids().pop().unwrap();
    let record = sandboxer.show(&id);
    assert_eq!(record["state"], "failed", "{record:#}");
    let reason = record["state_reason"].as_str().unwrap();
    assert!(reason.contains("build host `doomed`"), "{reason}");
    assert!(
        run.stderr.contains("lost build host `doomed`"),
        "{}",
        run.describe()
    );

    // The host comes back: its slot is free, here and there.
    host.sshd.restart();
    sandboxer
        .run(&[
            "create",
            "--profile",
            "sleep",
            "--no-wait",
            "-i",
            "var.seconds=0",
        ])
        .success();
    // What the lost build may have left there, gc now finds gone, and teardown removes its
    // directory.
    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(actions[0]["action"], "stop-orphaned-build", "{actions}");
    assert_eq!(
        actions[0]["detail"], "its process group had already ended",
        "{actions}"
    );
    sandboxer.run(&["teardown", &id]).success();
    assert_eq!(host.build_dirs(), Vec::<String>::new());
}

#[test]
fn ctrl_c_of_a_remote_build_exits_130_and_leaves_nothing_on_the_host() {
    let host = BuildHost::start("b1", 11, Some(1));
    let sandboxer = control_machine(&[&host]);
    pool_profile(
        &sandboxer,
        "sleep",
        "sleep",
        "\"var.seconds\" = \"300\"\n",
        &[],
    );
    let build = sandboxer.start(&["create", "--profile", "sleep"]);
    wait_for_build_on(&host);
    let id = sandboxer.wait_for_state("provisioning");
    wait_for_the_provisioner_to_sleep(&sandboxer, &id);
    signal(build.id(), "INT");
    let run = build
        .finish_within(Duration::from_secs(60))
        .code(130)
        .error_contains("cancelled by SIGINT");
    assert!(
        !run.stderr.contains("warning:"),
        "the session ended cleanly: {}",
        run.describe()
    );
    assert_eq!(sandboxer.show(&id)["state"], "cancelled");
    assert_nothing_left_on(&host);
    assert_eq!(host.build_dirs(), Vec::<String>::new());
}

#[test]
fn a_stubborn_remote_packer_is_killed_after_the_cancel_timeout_and_at_a_second_ctrl_c() {
    let host = BuildHost::start("b1", 12, Some(1));
    let sandboxer = control_machine(&[]);
    // This host's Packer is a FAKE that ignores SIGINT.
    let fake = fixtures().join("fakes/fake-packer-ignores-sigint");
    write_pool(
        &sandboxer,
        &[],
        &format!(
            "{}packer = {:?}\n",
            host.pool_entry(),
            fake.display().to_string()
        ),
    );
    pool_profile(&sandboxer, "quick", "quick", "", &[]);
    for second_ctrl_c in [false, true] {
        let build = sandboxer.start(&[
            "create",
            "--profile",
            "quick",
            "--cancel-timeout",
            if second_ctrl_c { "10m" } else { "1s" },
        ]);
        wait_until(Duration::from_secs(60), "the fake on the host", || {
            host.leftovers()
                .iter()
                .any(|line| line.contains("sleep 300"))
                .then_some(())
        });
        let asked = std::time::Instant::now();
        signal(build.id(), "INT");
        if second_ctrl_c {
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                host.leftovers()
                    .iter()
                    .any(|line| line.contains("sleep 300")),
                "the first Ctrl-C waits for Packer"
            );
            signal(build.id(), "INT");
        }
        build.finish_within(Duration::from_secs(60)).code(130);
        if !second_ctrl_c {
            assert!(
                asked.elapsed() >= Duration::from_secs(1),
                "killed before the timeout"
            );
        }
        assert_nothing_left_on(&host);
    }
}

#[test]
fn gc_stops_what_a_killed_sandboxer_left_on_its_build_host() {
    let host = BuildHost::start("b1", 13, Some(1));
    let sandboxer = control_machine(&[&host]);
    pool_profile(
        &sandboxer,
        "sleep",
        "sleep",
        "\"var.seconds\" = \"300\"\n",
        &[],
    );
    let mut build = sandboxer.spawn(&["create", "--profile", "sleep"]);
    let id = sandboxer.wait_for_state("provisioning");
    wait_until(
        Duration::from_secs(60),
        "Packer's group on the host in the record",
        || sandboxer.stored_record(&id)["build_host"]["processes"]["pgid"].as_u64(),
    );
    wait_for_the_provisioner_to_sleep(&sandboxer, &id);
    build.kill().unwrap(); // SIGKILL: no chance to clean up
    build.wait().unwrap();
    assert!(
        host.leftovers()
            .iter()
            .any(|line| line.contains("sleep 300")),
        "the build outlives its sandboxer on the host"
    );

    let actions = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(actions[0]["action"], "stop-orphaned-build", "{actions}");
    assert_eq!(actions[0]["outcome"], "done", "{actions}");
    assert_nothing_left_on(&host);
    let record = sandboxer.show(&id);
    assert!(record["build_host"]["processes"].is_null(), "{record:#}");
    assert_eq!(record["build_host"]["dir_left"], true);
    assert_eq!(host.build_dirs(), std::slice::from_ref(&id));
    sandboxer.run(&["teardown", &id]).success();
    assert_eq!(
        host.build_dirs(),
        Vec::<String>::new(),
        "teardown removes it"
    );
}

#[test]
fn a_failed_remote_build_keeps_its_directory_under_keep_until_teardown() {
    let host = BuildHost::start("b1", 17, Some(1));
    let sandboxer = control_machine(&[&host]);
    pool_profile(&sandboxer, "fail", "fail", "", &[]);
    sandboxer
        .run(&["create", "--profile", "fail", "--on-failure", "keep"])
        .code(1)
        .error_contains("disk quota exceeded");
    let id = sandboxer.ids().pop().unwrap();
    let record = sandboxer.show(&id);
    assert_eq!(record["state"], "failed");
    assert_eq!(record["build_host"]["dir_left"], true, "{record:#}");
    assert!(record["build_host"]["processes"].is_null(), "{record:#}");
    assert_eq!(host.build_dirs(), std::slice::from_ref(&id));
    let kept = host.workdir.join(&id);
    assert!(
        kept.join("output/pooled.partial").is_file(),
        "what Packer left is kept"
    );
    assert!(!kept.join("secrets").exists(), "but never the secrets");
    assert_nothing_left_on(&host);
    sandboxer.run(&["teardown", &id]).success();
    assert_eq!(
        host.build_dirs(),
        Vec::<String>::new(),
        "teardown removes it"
    );

    // Under cleanup (the default), nothing stays.
    sandboxer.run(&["create", "--profile", "fail"]).code(1);
    assert_eq!(host.build_dirs(), Vec::<String>::new());
}

#[test]
fn an_artifact_altered_on_the_host_before_the_copy_fails_the_build() {
    // The host's rsync is a FAKE that alters each artifact before sending it.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        fixtures().join("fakes/fake-rsync-alters-artifacts"),
        bin.path().join("rsync"),
    )
    .unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.path().display());
    let host = BuildHost::start_with(
        "b1",
        14,
        Some(1),
        "work",
        &[("PATH", &path), ("FAKE_RSYNC_ALTER_UNDER", "{workdir}")],
    );
    let sandboxer = control_machine(&[&host]);
    pool_profile(&sandboxer, "remote", "remote", "", &[]);
    let run = sandboxer
        .run(&["create", "--profile", "remote"])
        .code(1)
        .error_contains("artifact pooled.ova changed on its way from build host `b1`");
    let id = sandboxer.ids().pop().unwrap();
    assert_eq!(sandboxer.show(&id)["state"], "failed", "{}", run.describe());
    assert_nothing_left_on(&host);
}

#[test]
fn hosts_shows_reachability_packer_running_builds_and_free_slots() {
    let busy = BuildHost::start("busy", 15, Some(2)).labelled(&["kvm"]);
    let mut down = BuildHost::start("down", 16, Some(1));
    down.sshd.stop_listening();
    let sandboxer = control_machine(&[&busy, &down]);
    write_pool(
        &sandboxer,
        &[&busy, &down],
        "[[host]]\nname = \"local\"\nmax_concurrent = 3\n",
    );
    let gate = sandboxer.root().join("gate");
    pool_profile(
        &sandboxer,
        "gated",
        "gate",
        &format!("\"var.gate\" = {:?}\n", gate.display().to_string()),
        &["kvm"],
    );
    let mut build = sandboxer.start(&["create", "--profile", "gated"]);
    build.wait_for_stderr("build started");

    let report = sandboxer.run(&["hosts", "--json"]).success().json();
    let hosts = report["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts
        .iter()
        .map(|host| host["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["busy", "down", "local"]);
    assert_eq!(hosts[0]["reachable"], true);
    assert_eq!(hosts[0]["running"], 1, "{report:#}");
    assert_eq!(hosts[0]["free_slots"], 1);
    assert!(
        hosts[0]["packer_version"]
            .as_str()
            .unwrap()
            .starts_with("1."),
        "{report:#}"
    );
    assert_eq!(hosts[0]["labels"][0], "kvm");
    assert_eq!(hosts[1]["reachable"], false);
    assert!(
        hosts[1]["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{report:#}"
    );
    assert_eq!(hosts[2]["reachable"], true);
    assert_eq!(hosts[2]["running"], 0);
    assert_eq!(hosts[2]["free_slots"], 3);

    let table = sandboxer.run(&["hosts"]).success();
    assert!(table.stdout.contains("busy"), "{}", table.describe());
    assert!(table.stdout.contains("1 of 2"), "{}", table.describe());
    assert!(
        table.stdout.contains("unreachable: nothing is listening"),
        "{}",
        table.describe()
    );
    std::fs::write(&gate, "").unwrap();
    build.finish_within(Duration::from_secs(120)).success();
}
