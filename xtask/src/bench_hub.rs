//! `cargo xtask bench-hub`: a build with a State Hub that answers every request after 2 s,
//! against the same build with no State Hub. Target: ratio of the medians <= 1.02 — a slow
//! State Hub must not slow a create (events are spooled and sent in the background).
//!
//! Self-contained so `cargo xtask bench` can call [`measure`] and print [`HubBench::line`].

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xshell::{Shell, cmd};

/// How long the stand-in State Hub takes to answer.
const ANSWER_AFTER: Duration = Duration::from_secs(2);
/// The build sleeps this long (the `sleep` fixture), about as long as State Hub's answers.
const BUILD_SECONDS: &str = "2";
const RUNS: usize = 5;
pub const MAX_RATIO: f64 = 1.02;

pub use crate::stats::Stats;

/// The two configurations and their ratio.
#[derive(Debug, Clone)]
pub struct HubBench {
    /// Every sample, in the order taken (for `cargo xtask bench`'s report).
    pub without_samples: Vec<Duration>,
    pub slow_samples: Vec<Duration>,
    pub without_hub: Stats,
    pub slow_hub: Stats,
}

impl HubBench {
    pub fn ratio(&self) -> f64 {
        self.slow_hub.median.as_secs_f64() / self.without_hub.median.as_secs_f64()
    }

    pub fn within_target(&self) -> bool {
        self.ratio() <= MAX_RATIO
    }

    /// One line for the bench report.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "state hub: no hub {:.0} ms ({:.0}-{:.0}), hub answering after {}s {:.0} ms ({:.0}-{:.0}) (median of {RUNS}, min-max): ratio {:.3} (target <= {MAX_RATIO})",
            ms(self.without_hub.median),
            ms(self.without_hub.min),
            ms(self.without_hub.max),
            ANSWER_AFTER.as_secs(),
            ms(self.slow_hub.median),
            ms(self.slow_hub.min),
            ms(self.slow_hub.max),
            self.ratio()
        )
    }
}

/// Times `create` of the `sleep` fixture with `sandboxer` (a release build), alternating no
/// State Hub and a State Hub on loopback that answers after [`ANSWER_AFTER`]; `root` is the
/// workspace, `scratch` a directory the bench may fill.
pub fn measure(sandboxer: &Path, root: &Path, scratch: &Path) -> anyhow::Result<HubBench> {
    let hub = SlowHub::start()?;
    let template = root.join("tests/fixtures/templates/sleep/sleep.pkr.hcl");
    let mut without = Vec::new();
    let mut with = Vec::new();
    for run in 0..RUNS {
        for (url, times, state) in [
            (None, &mut without, scratch.join("hub-bench-none")),
            (Some(hub.url()), &mut with, scratch.join("hub-bench-slow")),
        ] {
            let mut command = Command::new(sandboxer);
            command
                .args(["create", "--profile", "vm-packer-build", "-q", "-i"])
                .arg(format!("packer_template={}", template.display()))
                .args(["-i", &format!("vm_name=hub-bench-{run}")])
                .args(["-i", &format!("var.seconds={BUILD_SECONDS}")])
                .env("SANDBOXER_HOME", &state)
                .env_remove("STATE_HUB_TOKEN")
                .env_remove("STATE_HUB_TOKEN_FILE")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            match &url {
                Some(url) => command.env("STATE_HUB_URL", url),
                None => command.env_remove("STATE_HUB_URL"),
            };
            let started = Instant::now();
            let status = command.status()?;
            times.push(started.elapsed());
            anyhow::ensure!(
                status.success(),
                "sandboxer create failed ({status}) in {}",
                state.display()
            );
        }
    }
    anyhow::ensure!(
        hub.requests() > 0,
        "the stand-in State Hub never heard from sandboxer"
    );
    Ok(HubBench {
        without_samples: without.clone(),
        slow_samples: with.clone(),
        without_hub: Stats::of(without),
        slow_hub: Stats::of(with),
    })
}

/// `cargo xtask bench-hub`: builds sandboxer in release mode, measures, prints, and fails when
/// the ratio misses its target.
pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --release --quiet --package sandboxer").run()?;
    let root = sh.current_dir();
    let scratch = std::env::temp_dir().join(format!("sandboxer-bench-hub-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let measured = measure(&root.join("target/release/sandboxer"), &root, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let measured = measured?;
    println!("{}", measured.line());
    anyhow::ensure!(
        measured.within_target(),
        "a slow State Hub slows create: ratio {:.3} > {MAX_RATIO}",
        measured.ratio()
    );
    Ok(())
}

/// A State Hub on loopback that answers every request with 200 after [`ANSWER_AFTER`].
struct SlowHub {
    url: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SlowHub {
    fn start() -> anyhow::Result<SlowHub> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&requests);
        // Lives as long as the xtask process; each connection on a thread of its own.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || serve_slowly(stream, &counter));
            }
        });
        Ok(SlowHub { url, requests })
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn serve_slowly(stream: TcpStream, requests: &std::sync::atomic::AtomicUsize) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut saw_request = false;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                if saw_request {
                    break;
                }
                continue;
            }
            saw_request = true;
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(ANSWER_AFTER);
        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
