//! Samples and how they are taken: timed commands, alternating rounds, medians and ranges.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// What a number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    /// Megabytes (10^6 bytes) per second.
    MegabytesPerSecond,
    Mebibytes,
    /// A dimensionless ratio.
    Times,
}

impl Unit {
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Millis if value.abs() < 10.0 => format!("{value:.2} ms"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::MegabytesPerSecond => format!("{value:.0} MB/s"),
            Unit::Mebibytes => format!("{value:.1} MiB"),
            Unit::Times => format!("{value:.2}x"),
        }
    }

    /// The number alone, for ranges.
    pub fn bare(self, value: f64) -> String {
        match self {
            Unit::Millis if value.abs() < 10.0 => format!("{value:.2}"),
            Unit::Millis | Unit::Mebibytes => format!("{value:.1}"),
            Unit::MegabytesPerSecond => format!("{value:.0}"),
            Unit::Times => format!("{value:.2}"),
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::MegabytesPerSecond => "MB/s",
            Unit::Mebibytes => "MiB",
            Unit::Times => "x",
        }
    }
}

/// The samples of one side of a comparison.
#[derive(Debug, Clone)]
pub struct Series {
    /// What ran, as a person would type it.
    pub label: String,
    pub unit: Unit,
    pub samples: Vec<f64>,
}

impl Series {
    pub fn new(label: impl Into<String>, unit: Unit, samples: Vec<f64>) -> Series {
        Series {
            label: label.into(),
            unit,
            samples,
        }
    }

    pub fn millis(label: impl Into<String>, samples: &[Duration]) -> Series {
        Series::new(
            label,
            Unit::Millis,
            samples.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        )
    }

    pub fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// "12.3 ms [11.9–14.0]"
    pub fn summary(&self) -> String {
        format!(
            "{} [{}–{}]",
            self.unit.format(self.median()),
            self.unit.bare(self.min()),
            self.unit.bare(self.max())
        )
    }
}

/// Runs `a` and `b` alternately: `warmup` unrecorded pairs, then `rounds` recorded ones in ABBA
/// order, so a slow drift of the machine's load weighs on both sides alike.
pub fn alternate<T>(
    warmup: usize,
    rounds: usize,
    mut a: impl FnMut() -> anyhow::Result<T>,
    mut b: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<T>, Vec<T>)> {
    for _ in 0..warmup {
        a()?;
        b()?;
    }
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            from_a.push(a()?);
            from_b.push(b()?);
        } else {
            from_b.push(b()?);
            from_a.push(a()?);
        }
    }
    Ok((from_a, from_b))
}

/// Runs `command` to completion, its stdin empty, its stderr discarded and its stdout read
/// through a pipe (as a person's terminal or a script would); returns the wall time from spawn
/// to exit. A non-zero exit is an error: a benchmark of a failing command measures nothing.
pub fn time(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut stdout = child.stdout.take().context("a piped stdout")?;
    let mut sink = [0u8; 64 * 1024];
    while stdout.read(&mut sink)? > 0 {}
    let status = child.wait()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    Ok(elapsed)
}

/// Like [`time`], for several commands started at once; returns when the last one exits.
pub fn time_all(commands: Vec<Command>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut children = Vec::new();
    for mut command in commands {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        children.push((command, child));
    }
    for (command, mut child) in children {
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let series = Series::new("x", Unit::Millis, vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(series.median(), 2.5);
        assert_eq!(series.min(), 1.0);
        assert_eq!(series.max(), 10.0);
        assert_eq!(series.summary(), "2.50 ms [1.00–10.0]");
    }

    #[test]
    fn alternation_is_abba_after_warmup() {
        let order = std::cell::RefCell::new(Vec::new());
        let (a, b) = alternate(
            1,
            4,
            || {
                order.borrow_mut().push('a');
                Ok(())
            },
            || {
                order.borrow_mut().push('b');
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((a.len(), b.len()), (4, 4));
        assert_eq!(order.into_inner().iter().collect::<String>(), "ababbaabba");
    }
}
