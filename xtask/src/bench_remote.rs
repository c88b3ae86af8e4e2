//! `cargo xtask bench-remote`: what placing a build on a build host adds to the same build
//! here. The same trivial template (the `remote` fixture: Packer's `file` builder writes a
//! small OVA) is built with `sandboxer create`, alternately on `local` and on a build host
//! that is a real sshd on loopback with its own keys (made by `ssh-keygen` here), so the
//! remote figure pays for everything a remote build does: the slot taken over SSH, rsync up,
//! the streamed run, the hash there, rsync back, the hash here, the cleanup.
//!
//! Self-contained, as figures 2, 6 and 8 are: `cargo xtask bench` (figure 9, `remote`) calls
//! [`measure`]. The figure is reported, not held to a target: most of it is the SSH connection
//! (one login per build: the rsyncs share the session's connection) and the round trips over
//! it, which cost what the machine and the network make them.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xshell::{Shell, cmd};

/// Pairs of creates (one here, one on the build host), after one warm-up pair (which also
/// records the host key).
pub const RUNS: usize = 7;

pub use crate::stats::Stats;

/// The two configurations, and what the build host adds.
#[derive(Debug, Clone)]
pub struct RemoteBench {
    /// Every sample, in the order taken (for `cargo xtask bench`'s report).
    pub local_samples: Vec<Duration>,
    pub remote_samples: Vec<Duration>,
    pub local: Stats,
    pub remote: Stats,
    /// The median of `remote - local` over pairs run back to back, in milliseconds: steadier
    /// than the difference of the medians when the machine's load drifts.
    pub median_added_ms: f64,
}

impl RemoteBench {
    pub fn ratio(&self) -> f64 {
        self.remote.median.as_secs_f64() / self.local.median.as_secs_f64()
    }

    /// One line for the bench report.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "remote build: here {:.0} ms ({:.0}-{:.0}), on a build host over ssh on loopback {:.0} ms ({:.0}-{:.0}) (median of {}, min-max): {:+.0} ms added per build, ratio {:.2} (reported, no target)",
            ms(self.local.median),
            ms(self.local.min),
            ms(self.local.max),
            ms(self.remote.median),
            ms(self.remote.min),
            ms(self.remote.max),
            self.remote_samples.len(),
            self.median_added_ms,
            self.ratio()
        )
    }
}

/// Times `create` of the `remote` fixture with `sandboxer` (a release build), alternating this
/// machine and a build host on loopback, `runs` pairs; `root` is the workspace, `scratch` a
/// directory the bench may fill (the host's keys, work directory and sshd live there).
pub fn measure(
    sandboxer: &Path,
    root: &Path,
    scratch: &Path,
    runs: usize,
) -> anyhow::Result<RemoteBench> {
    let host = BuildHost::start(&scratch.join("host"))?;
    // Short: Packer's plugin sockets live below the state directory here (sandbox work dir).
    let state = scratch.join("s");
    let config = scratch.join("c");
    std::fs::create_dir_all(config.join("sandboxer"))?;
    std::fs::write(config.join("sandboxer/hosts.toml"), host.pool_entry())?;
    let template = root.join("tests/fixtures/templates/remote/remote.pkr.hcl");
    let create = |run: usize, on: &str| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let output = Command::new(sandboxer)
            .args(["create", "--profile", "vm-packer-build", "-q", "-i"])
            .arg(format!("packer_template={}", template.display()))
            .args(["-i", &format!("vm_name=remote-bench-{run}")])
            .args(["-i", &format!("placement_host={on}")])
            .env("SANDBOXER_HOME", &state)
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("SANDBOXER_HOSTS")
            .env_remove("STATE_HUB_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let took = started.elapsed();
        anyhow::ensure!(
            output.status.success(),
            "sandboxer create on `{on}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(took)
    };
    create(0, "local")?;
    create(0, "bench")?;
    let mut here = Vec::new();
    let mut there = Vec::new();
    let mut added = Vec::new();
    for run in 1..=runs {
        // ABBA: neither configuration always goes first.
        let (local, remote) = if run % 2 == 0 {
            let local = create(run, "local")?;
            (local, create(run, "bench")?)
        } else {
            let remote = create(run, "bench")?;
            (create(run, "local")?, remote)
        };
        here.push(local);
        there.push(remote);
        added.push((remote.as_secs_f64() - local.as_secs_f64()) * 1e3);
    }
    added.sort_by(f64::total_cmp);
    drop(host);
    Ok(RemoteBench {
        local_samples: here.clone(),
        remote_samples: there.clone(),
        local: Stats::of(here),
        remote: Stats::of(there),
        median_added_ms: added[added.len() / 2],
    })
}

/// `cargo xtask bench-remote`: builds sandboxer in release mode, measures and prints.
pub fn run(sh: &Shell) -> anyhow::Result<()> {
    crate::setup::run(sh, crate::setup::Purpose::Bench)?;
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --release --quiet --package sandboxer").run()?;
    let root = sh.current_dir();
    let scratch = short_scratch("sbr")?;
    let measured = measure(
        &root.join("target/release/sandboxer"),
        &root,
        &scratch,
        RUNS,
    );
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{}", measured?.line());
    Ok(())
}

/// A scratch directory in /tmp: the build host's work directory lives there, and Packer's
/// sockets need short paths.
pub fn short_scratch(prefix: &str) -> anyhow::Result<PathBuf> {
    let scratch = PathBuf::from("/tmp").join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    Ok(scratch)
}

/// A build host for the bench: sshd on a free loopback port, logging in the user the bench
/// runs as with a key made for it; stopped when dropped.
struct BuildHost {
    sshd: Child,
    port: u16,
    dir: PathBuf,
    user: String,
}

impl BuildHost {
    fn start(dir: &Path) -> anyhow::Result<BuildHost> {
        std::fs::create_dir_all(dir.join("work"))?;
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "sandboxer-bench",
                    "-f",
                ])
                .arg(dir.join(key))
                .stdin(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "ssh-keygen failed");
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\nPidFile none\nUsePAM no\nStrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\nPrintMotd no\n",
                dir = dir.display()
            ),
        )?;
        // sshd run as root wants its privilege-separation directory, which a machine that
        // never ran the service lacks.
        if rustix::process::geteuid().is_root() {
            std::fs::create_dir_all("/run/sshd")?;
        }
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .ok_or_else(|| {
                anyhow::anyhow!("sshd not found (Debian: apt-get install openssh-server)")
            })?;
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log"))?)
            .spawn()?;
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_owned();
        let host = BuildHost {
            sshd: child,
            port,
            dir: dir.to_owned(),
            user,
        };
        host.wait_until_ready()?;
        Ok(host)
    }

    fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the bench's sshd did not start: {}",
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pool_entry(&self) -> String {
        format!(
            "[[host]]\nname = \"bench\"\nssh = \"{}@127.0.0.1:{}\"\nidentity = \"{}\"\nworkdir = \"{}\"\nmax_concurrent = 1\n",
            self.user,
            self.port,
            self.dir.join("client_key").display(),
            self.dir.join("work").display()
        )
    }
}

impl Drop for BuildHost {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}
