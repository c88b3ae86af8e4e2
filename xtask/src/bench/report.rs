//! The bench's results as a table on stdout, Markdown for `docs/performance.md`, and JSON.

use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::{Comparison, Figure, Outcome, Series};

/// The machine the numbers were taken on.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// 1-minute load average when the run started: how busy the others were.
    pub load: String,
    pub git_head: String,
    pub packer: String,
}

impl Machine {
    pub fn read(sh: &Shell) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let read = |text: xshell::Result<String>| text.unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: read(cmd!(sh, "uname -r").quiet().read()),
            load: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| text.split_whitespace().next().map(str::to_owned))
                .unwrap_or_default(),
            git_head: read(cmd!(sh, "git rev-parse --short HEAD").quiet().read()),
            packer: read(
                cmd!(sh, "packer version")
                    .env("CHECKPOINT_DISABLE", "1")
                    .quiet()
                    .read(),
            )
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.0} GiB, Linux {}, load {} at start, {}, commit {}",
            self.cores,
            self.cpu,
            self.memory_gib,
            self.kernel,
            self.load,
            self.packer,
            self.git_head
        )
    }
}

type Results<'a> = [(&'a Figure, Outcome)];

/// One row per comparison: the subject and baseline (median [min–max]), and each target.
fn rows(results: &Results<'_>) -> Vec<[String; 6]> {
    let mut rows = Vec::new();
    for (figure, outcome) in results {
        match outcome {
            Outcome::Broken(error) => rows.push([
                figure.number.to_string(),
                figure.name.to_owned(),
                "could not be measured (see stderr)".to_owned(),
                String::new(),
                error
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(80)
                    .collect(),
                "BROKEN".to_owned(),
            ]),
            Outcome::Measured(comparisons) => {
                for comparison in comparisons {
                    let checks = if comparison.checks.is_empty() {
                        "(for reference)".to_owned()
                    } else {
                        comparison
                            .checks
                            .iter()
                            .map(|check| check.describe())
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    let verdict = if comparison.checks.iter().all(|check| check.met()) {
                        "ok"
                    } else {
                        "MISSED"
                    };
                    rows.push([
                        figure.number.to_string(),
                        comparison.name.clone(),
                        comparison.subject.summary(),
                        comparison.baseline.summary(),
                        checks,
                        verdict.to_owned(),
                    ]);
                }
            }
        }
    }
    rows
}

const HEADER: [&str; 6] = [
    "fig",
    "comparison",
    "subject median [min–max]",
    "baseline median [min–max]",
    "target",
    "",
];

pub fn table(results: &Results<'_>) -> String {
    let rows = rows(results);
    let mut widths = HEADER.map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| {
                let pad = width - cell.chars().count();
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        text.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(&HEADER.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push('\n');
    for (figure, outcome) in results {
        if let Outcome::Measured(comparisons) = outcome {
            for comparison in comparisons {
                out.push_str(&format!(
                    "{} {}: subject `{}`, baseline `{}`, {} rounds\n",
                    figure.number,
                    comparison.name,
                    comparison.subject.label,
                    comparison.baseline.label,
                    comparison.subject.samples.len()
                ));
            }
        }
    }
    out
}

pub fn markdown(machine: &Machine, results: &Results<'_>) -> String {
    let mut out = format!("Measured on {}.\n\n", machine.describe());
    out.push_str(&format!("| {} | verdict |\n", HEADER[..5].join(" | ")));
    out.push_str("| --- | --- | ---: | ---: | --- | --- |\n");
    for row in rows(results) {
        let cells: Vec<String> = row.iter().map(|cell| cell.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn series(series: &Series) -> Value {
    json!({
        "label": series.label,
        "unit": series.unit.slug(),
        "median": series.median(),
        "min": series.min(),
        "max": series.max(),
        "samples": series.samples,
    })
}

fn comparison(comparison: &Comparison) -> Value {
    json!({
        "name": comparison.name,
        "subject": series(&comparison.subject),
        "baseline": series(&comparison.baseline),
        "checks": comparison.checks.iter().map(|check| json!({
            "what": check.what,
            "value": check.value,
            "limit": check.limit,
            "unit": check.unit.slug(),
            "at_least": check.at_least,
            "met": check.met(),
        })).collect::<Vec<_>>(),
        "met": comparison.checks.iter().all(|check| check.met()),
    })
}

pub fn json(machine: &Machine, results: &Results<'_>) -> Value {
    json!({
        "machine": {
            "cpu": machine.cpu,
            "cores": machine.cores,
            "memory_gib": machine.memory_gib,
            "kernel": machine.kernel,
            "load_at_start": machine.load,
            "packer": machine.packer,
            "git_head": machine.git_head,
        },
        "figures": results.iter().map(|(figure, outcome)| {
            let mut value = json!({
                "number": figure.number,
                "name": figure.name,
                "title": figure.title,
            });
            match outcome {
                Outcome::Measured(comparisons) => {
                    value["measured"] = json!(true);
                    value["comparisons"] = comparisons.iter().map(comparison).collect();
                }
                Outcome::Broken(error) => {
                    value["measured"] = json!(false);
                    value["error"] = json!(error);
                }
            }
            value
        }).collect::<Vec<_>>(),
    })
}
