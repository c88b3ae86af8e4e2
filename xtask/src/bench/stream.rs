//! Figure 4, stream throughput and memory: sandboxer's machine-readable parser, redaction and
//! log writer fed a gigabyte of realistic Packer output, against `cat > /dev/null` of the same
//! stream. The output comes from `tests/fixtures/fakes/fake-packer-replays-output`, a fake
//! Packer that replays a generated sample as fast as the pipe takes it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::measure::alternate;
use super::{Bench, Check, Comparison, Outcome, Series, Unit};

const MIN_MEGABYTES_PER_SECOND: f64 = 300.0;
const MAX_PEAK_RSS_MIB: f64 = 16.0;
/// The sample the fake replays; the stream is this many bytes times the repeat count.
const SAMPLE_BYTES: usize = 4 << 20;
/// A secret with a comma, so Packer's escaped form of it differs from the plain one.
const SECRET: &str = "S3cr3t,T0ken-bench";
const ESCAPED_SECRET: &str = "S3cr3t%!(PACKER_COMMA)T0ken-bench";

pub fn measure(bench: &Bench) -> anyhow::Result<Outcome> {
    let dir = bench.scratch("stream")?;
    let sample = dir.join("sample.txt");
    std::fs::write(&sample, generate_sample(SAMPLE_BYTES))?;
    let template_dir = dir.join("tpl");
    std::fs::create_dir_all(&template_dir)?;
    std::fs::write(
        template_dir.join("stream.pkr.hcl"),
        "variable \"vm_name\" {\n  type = string\n}\nvariable \"token\" {\n  type      = string\n  sensitive = true\n}\nsource \"null\" \"stream\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.stream\"]\n}\n",
    )?;
    let run = Run {
        bench,
        dir: dir.clone(),
        state: dir.join("state"),
        sample,
        fake: bench.fixture("fakes/fake-packer-replays-output"),
    };

    let mut comparisons = Vec::new();
    for (repeat, rounds) in [(256, bench.rounds(3)), (16, bench.rounds(5))] {
        let bytes = (SAMPLE_BYTES * repeat) as f64;
        let size = if repeat * SAMPLE_BYTES >= 1 << 30 {
            format!("{} GiB", (repeat * SAMPLE_BYTES) >> 30)
        } else {
            format!("{} MiB", (repeat * SAMPLE_BYTES) >> 20)
        };
        let (floor, through) = alternate(1, rounds, || run.cat(repeat), || run.sandboxer(repeat))?;
        let rate = |runs: &[(Duration, f64)]| -> Vec<f64> {
            runs.iter()
                .map(|(took, _)| bytes / took.as_secs_f64() / 1e6)
                .collect()
        };
        let peak =
            |runs: &[(Duration, f64)]| -> Vec<f64> { runs.iter().map(|(_, mib)| *mib).collect() };
        let subject_label = "sandboxer create -q (fake packer replaying output)";
        let baseline_label = "fake packer | cat > /dev/null";
        let throughput = Series::new(subject_label, Unit::MegabytesPerSecond, rate(&through));
        let rss = Series::new(subject_label, Unit::Mebibytes, peak(&through));
        let peak_rss = rss.max();
        comparisons.push(Comparison {
            name: format!("throughput, {size} of output"),
            checks: vec![Check::at_least(
                "median",
                throughput.median(),
                MIN_MEGABYTES_PER_SECOND,
                Unit::MegabytesPerSecond,
            )],
            subject: throughput,
            baseline: Series::new(baseline_label, Unit::MegabytesPerSecond, rate(&floor)),
        });
        comparisons.push(Comparison {
            name: format!("peak RSS, {size} of output"),
            checks: vec![Check::at_most(
                "highest",
                peak_rss,
                MAX_PEAK_RSS_MIB,
                Unit::Mebibytes,
            )],
            subject: rss,
            baseline: Series::new(baseline_label, Unit::Mebibytes, peak(&floor)),
        });
    }
    Ok(Outcome::Measured(comparisons))
}

struct Run<'a> {
    bench: &'a Bench,
    dir: PathBuf,
    state: PathBuf,
    sample: PathBuf,
    fake: PathBuf,
}

impl Run<'_> {
    fn fake(&self, repeat: usize) -> Command {
        let mut command = Command::new(&self.fake);
        command
            .env("FAKE_PACKER_OUTPUT", &self.sample)
            .env("FAKE_PACKER_REPEAT", repeat.to_string());
        command
    }

    /// The floor: the fake's output read by cat into /dev/null. Returns the time and cat's peak RSS.
    fn cat(&self, repeat: usize) -> anyhow::Result<(Duration, f64)> {
        let rss_file = self.dir.join("cat.rss");
        let started = Instant::now();
        let mut fake = self
            .fake(repeat)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the fake packer")?;
        let mut cat = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg("cat")
            .stdin(fake.stdout.take().context("a piped stdout")?)
            .stdout(Stdio::null())
            .spawn()
            .context("starting cat")?;
        let fake_status = fake.wait()?;
        let cat_status = cat.wait()?;
        let took = started.elapsed();
        anyhow::ensure!(
            fake_status.success() && cat_status.success(),
            "fake packer | cat failed: {fake_status}, {cat_status}"
        );
        Ok((took, read_rss_mib(&rss_file)?))
    }

    /// sandboxer create with the fake as its Packer. Returns the time and its peak RSS, after
    /// checking that the log holds the whole stream with the secret redacted.
    fn sandboxer(&self, repeat: usize) -> anyhow::Result<(Duration, f64)> {
        let rss_file = self.dir.join("sandboxer.rss");
        let args = [
            "create",
            "--profile",
            "vm-packer-build",
            "-i",
            "packer_template=tpl/stream.pkr.hcl",
            "-i",
            "vm_name=stream",
            "-i",
            &format!("var.token={SECRET}"),
            "-q",
        ];
        let sandboxer = self.bench.sandboxer(&self.state, &self.dir, &args);
        let mut command = Command::new("/usr/bin/time");
        super::scrub_env(&mut command);
        command
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(sandboxer.get_program())
            .args(sandboxer.get_args())
            .current_dir(&self.dir)
            .env("SANDBOXER_HOME", &self.state)
            .env("XDG_CONFIG_HOME", self.dir.join(".config"))
            .env("SANDBOXER_PACKER", &self.fake)
            .env("FAKE_PACKER_OUTPUT", &self.sample)
            .env("FAKE_PACKER_REPEAT", repeat.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let status = command.status().context("running sandboxer")?;
        let took = started.elapsed();
        anyhow::ensure!(status.success(), "{command:?} failed: {status}");
        let sandbox = only_sandbox(&self.state.join("sandboxes"))?;
        check_log(&sandbox.join("provision.log"), SAMPLE_BYTES * repeat)?;
        // A gigabyte log per round adds up: keep the disk as it was.
        std::fs::remove_dir_all(&sandbox)?;
        Ok((took, read_rss_mib(&rss_file)?))
    }
}

fn read_rss_mib(path: &Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(path)?;
    let kib: f64 = text
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("no peak RSS from /usr/bin/time in {text:?}"))?;
    Ok(kib / 1024.0)
}

fn only_sandbox(sandboxes: &Path) -> anyhow::Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sandboxes)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            found.push(entry.path());
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        other => anyhow::bail!("expected one sandbox, found {other:?}"),
    }
}

/// The log must hold (about) the whole stream, with the secret never in it, plain or escaped.
fn check_log(log: &Path, streamed: usize) -> anyhow::Result<()> {
    let len = std::fs::metadata(log)?.len() as usize;
    // Lines longer than 64 KiB are cut; the sample has one such line per 2 MiB.
    anyhow::ensure!(
        len >= streamed / 10 * 9,
        "the log holds {len} bytes of {streamed} streamed"
    );
    let leaked = Command::new("grep")
        .args(["-c", "-F", "-e", SECRET, "-e", ESCAPED_SECRET])
        .arg(log)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(
        leaked.code() == Some(1),
        "the secret reached the log {}",
        log.display()
    );
    let redacted = Command::new("grep")
        .args(["-q", "-F", "<redacted>"])
        .arg(log)
        .status()?;
    anyhow::ensure!(
        redacted.success(),
        "nothing was redacted in {}",
        log.display()
    );
    Ok(())
}

/// A deterministic sample of what Packer prints with `-machine-readable` during a busy build:
/// provisioner chatter with escaped commas and newlines, headlines, errors, the secret in plain
/// and escaped form, long lines (a script dumping data) and, every 2 MiB, one line longer than
/// sandboxer keeps whole.
fn generate_sample(bytes: usize) -> String {
    const WORDS: [&str; 24] = [
        "Installing",
        "package",
        "libssl3",
        "from",
        "deb.debian.org,",
        "done.",
        "Setting",
        "up",
        "qemu-utils",
        "(1:7.2+dfsg-7)",
        "...",
        "Unpacking",
        "/var/cache/apt/archives/",
        "Processing",
        "triggers",
        "for",
        "man-db,",
        "warning:",
        "retrying,",
        "in",
        "5s",
        "ok",
        "build-essential",
        "\\n",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = move |below: usize| -> usize {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % below
    };
    let escape = |text: &str| text.replace(',', "%!(PACKER_COMMA)");
    let mut out = String::with_capacity(bytes + 200_000);
    let mut next_huge = 2 << 20;
    let mut ts = 1_700_000_000u64;
    while out.len() < bytes {
        ts += (next(10) == 0) as u64;
        if out.len() >= next_huge {
            next_huge += 2 << 20;
            let huge: String = (0..100_000)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect();
            let _ = writeln!(out, "{ts},null.stream,ui,message,    null.stream: {huge}");
            continue;
        }
        match next(100) {
            0..=59 => {
                let words: Vec<&str> = (0..8 + next(16))
                    .map(|_| WORDS[next(WORDS.len())])
                    .collect();
                let _ = writeln!(
                    out,
                    "{ts},null.stream,ui,message,    null.stream: {}",
                    escape(&words.join(" "))
                );
            }
            60..=69 => {
                let _ = writeln!(
                    out,
                    "{ts},,ui,say,==> null.stream: Provisioning with shell script: /tmp/packer-shell{}",
                    next(1_000_000)
                );
            }
            70..=79 => {
                let secret = if next(2) == 0 { SECRET } else { ESCAPED_SECRET };
                let _ = writeln!(
                    out,
                    "{ts},null.stream,ui,message,    null.stream: curl -fsS -H 'Authorization: Bearer {secret}' https://artifacts.example.invalid/v1/blobs/{}",
                    next(1 << 30)
                );
            }
            80..=84 => {
                let _ = writeln!(
                    out,
                    "{ts},null.stream,ui,error,==> null.stream: E: Could not get lock /var/lib/dpkg/lock-frontend%!(PACKER_COMMA) retrying\\n(attempt {})",
                    next(10)
                );
            }
            85..=89 => {
                let len = 2_000 + next(14_000);
                let blob: String = (0..len)
                    .map(|_| {
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                            [next(64)] as char
                    })
                    .collect();
                let _ = writeln!(out, "{ts},null.stream,ui,message,    null.stream: {blob}");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{ts},null.stream,ui,message,    null.stream: [{:>3}%] Building CXX object src/CMakeFiles/core.dir/module_{}.cpp.o",
                    next(101),
                    next(500)
                );
            }
        }
    }
    out
}
