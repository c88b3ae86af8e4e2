//! Packer's `-machine-readable` stream: decoding lines and folding them into a build report.
//!
//! Each line is `timestamp,target,type,data...`. Inside a field `,` is written
//! `%!(PACKER_COMMA)`, a newline `\n` and a carriage return `\r` (two characters each).
//! Backslashes are not escaped, so decoding is slightly ambiguous; we accept that, as Packer's
//! own consumers do.

use std::collections::{BTreeMap, VecDeque};

use camino::Utf8PathBuf;

use crate::progress::Level;
use crate::record::{BuildOutcome, BuildRun};

/// One decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub timestamp: i64,
    /// The build name (`null.example`), or empty for global messages.
    pub target: String,
    pub kind: String,
    pub data: Vec<String>,
}

/// Splits and decodes one line; `None` when it is not machine-readable output at all.
pub fn parse_line(raw: &str) -> Option<Line> {
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let mut fields = raw.split(',');
    let timestamp = fields.next()?.parse().ok()?;
    let target = decode(fields.next()?);
    let kind = decode(fields.next()?);
    if kind.is_empty() {
        return None;
    }
    let data = fields.map(decode).collect();
    Some(Line {
        timestamp,
        target,
        kind,
        data,
    })
}

fn decode(field: &str) -> String {
    field
        .replace("%!(PACKER_COMMA)", ",")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
}

/// Applies the same escaping Packer applies, so a secret can be found in raw lines too.
pub fn encode(text: &str) -> String {
    text.replace(',', "%!(PACKER_COMMA)")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// The text Packer prints when a build was cancelled (it exits 1 as for any failure).
pub const CANCEL_LINE: &str = "Cleanly cancelled builds after being interrupted.";

/// How many error lines a report keeps: enough to explain a failure, bounded for long builds.
const MAX_ERRORS: usize = 20;

/// How many `ui,error` lines a failure message quotes after the build errors.
const WHY_LINES: usize = 5;

/// How many builds a report tracks: far more than any template has sources, bounded for a
/// stream that names a new target on every line.
const MAX_BUILDS: usize = 1000;

/// What the stream said about the build, kept in bounded memory whatever its length.
#[derive(Debug, Default)]
pub struct Report {
    /// Files of all artifacts, de-duplicated (post-processor chains list some twice), each
    /// with the build that reported it first.
    pub artifact_files: BTreeMap<Utf8PathBuf, String>,
    /// The builds that ran, in the order Packer first named them: a build that reported an
    /// artifact count succeeded, one that reported an error failed.
    pub builds: Vec<BuildRun>,
    /// Per-build `error` lines: `(build, message)`.
    pub build_errors: VecDeque<(String, String)>,
    /// The most recent `ui,error` lines.
    pub ui_errors: VecDeque<String>,
    /// Lines that were not machine-readable (Packer crashing, or printing usage text).
    pub stray_lines: VecDeque<String>,
    pub error_count: Option<u64>,
    pub cancelled: bool,
}

/// What a line means for the person watching.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    Output(Level, String),
    Artifact(Utf8PathBuf),
}

impl Report {
    /// Folds one raw line into the report and says what, if anything, to show.
    pub fn observe(&mut self, raw: &str) -> Option<Notice> {
        let Some(line) = parse_line(raw) else {
            let text = raw.trim_end().to_owned();
            if text.is_empty() {
                return None;
            }
            push_bounded(&mut self.stray_lines, text.clone());
            return Some(Notice::Output(Level::Error, text));
        };
        match (line.kind.as_str(), line.data.as_slice()) {
            ("ui", [level, text, ..]) => {
                let level = match level.as_str() {
                    "say" => Level::Say,
                    "error" => Level::Error,
                    _ => Level::Message,
                };
                if level == Level::Error {
                    push_bounded(&mut self.ui_errors, text.clone());
                }
                if text.contains(CANCEL_LINE) {
                    self.cancelled = true;
                }
                Some(Notice::Output(level, text.clone()))
            }
            ("artifact-count", _) if !line.target.is_empty() => {
                self.build_ran(&line.target, BuildOutcome::Succeeded);
                None
            }
            ("artifact", [_index, field, _file_index, path, ..]) if field == "file" => {
                let path = Utf8PathBuf::from(path);
                if self.artifact_files.contains_key(&path) {
                    return None;
                }
                self.artifact_files
                    .insert(path.clone(), line.target.clone());
                Some(Notice::Artifact(path))
            }
            ("error-count", [count, ..]) => {
                self.error_count = count.parse().ok();
                None
            }
            ("error", [message, ..]) => {
                if !line.target.is_empty() {
                    self.build_ran(&line.target, BuildOutcome::Failed);
                }
                push_bounded(
                    &mut self.build_errors,
                    (line.target.clone(), message.clone()),
                );
                None
            }
            _ => None,
        }
    }

    /// Notes that build `name` ran and how it ended; a failure is never overturned.
    fn build_ran(&mut self, name: &str, outcome: BuildOutcome) {
        if let Some(build) = self.builds.iter_mut().find(|build| build.name == name) {
            if outcome == BuildOutcome::Failed {
                build.outcome = outcome;
            }
        } else if self.builds.len() < MAX_BUILDS {
            self.builds.push(BuildRun {
                name: name.to_owned(),
                outcome,
            });
        }
    }

    /// Packer's own words about why the build failed, most specific first.
    ///
    /// Per-build `error` lines say what failed ("Script exited with non-zero exit status: 1");
    /// the last few `ui,error` lines usually say why (the script's own stderr), so both are kept.
    pub fn failure_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .build_errors
            .iter()
            .map(|(build, message)| {
                if build.is_empty() {
                    message.clone()
                } else {
                    format!("{build}: {message}")
                }
            })
            .collect();
        let why = self
            .ui_errors
            .iter()
            // Packer repeats each build error as "Build 'x' errored after ...: <message>".
            .filter(|text| {
                !self
                    .build_errors
                    .iter()
                    .any(|(_, message)| text.contains(message.as_str()))
            })
            .rev()
            .take(WHY_LINES)
            .collect::<Vec<_>>();
        lines.extend(why.into_iter().rev().cloned());
        if lines.is_empty() {
            lines.extend(self.stray_lines.iter().cloned());
        }
        lines
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == MAX_ERRORS {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        let line =
            parse_line("1700000000,,ui,error,Error: a%!(PACKER_COMMA) b\\n\\non line 3\n").unwrap();
        assert_eq!(line.timestamp, 1_700_000_000);
        assert_eq!(line.target, "");
        assert_eq!(line.kind, "ui");
        assert_eq!(line.data, ["error", "Error: a, b\n\non line 3"]);
        assert_eq!(encode("a, b\nc"), "a%!(PACKER_COMMA) b\\nc");
        assert_eq!(parse_line("not machine readable"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn collects_deduplicated_artifacts() {
        let mut report = Report::default();
        let lines = [
            "1,null.example,artifact-count,2",
            "1,null.example,artifact,0,builder-id,fnoeding.null",
            "1,null.example,artifact,0,files-count,0",
            "1,null.example,artifact,1,file,0,/out/demo.ova",
            "1,null.example,artifact,2,file,0,/out/demo.ova",
            "1,null.example,artifact,2,end",
        ];
        let notices: Vec<_> = lines
            .iter()
            .filter_map(|line| report.observe(line))
            .collect();
        assert_eq!(notices, [Notice::Artifact("/out/demo.ova".into())]);
        assert_eq!(report.artifact_files.len(), 1);
    }

    /// Packer 1.6.6's stream for a two-source build where `null.beta` failed (abridged).
    #[test]
    fn builds_and_the_artifacts_each_produced() {
        let mut report = Report::default();
        for line in [
            "1,,ui,say,==> null.alpha: Running local shell script: /tmp/packer-shell1",
            "1,,ui,error,Build 'null.beta' errored after 8 milliseconds: Script exited with non-zero exit status: 3",
            "1,,error-count,1",
            "1,null.beta,error,Script exited with non-zero exit status: 3",
            "1,null.alpha,artifact-count,2",
            "1,null.alpha,artifact,0,builder-id,fnoeding.null",
            "1,null.alpha,artifact,0,files-count,0",
            "1,null.alpha,artifact,1,file,0,out/alpha.ova",
            "1,deb.null.gamma,artifact-count,1",
            "1,deb.null.gamma,artifact,0,file,0,out/gamma.ova",
            "1,deb.null.gamma,artifact,0,file,1,out/alpha.ova",
        ] {
            report.observe(line);
        }
        let builds: Vec<(&str, BuildOutcome)> = report
            .builds
            .iter()
            .map(|build| (build.name.as_str(), build.outcome))
            .collect();
        assert_eq!(
            builds,
            [
                ("null.beta", BuildOutcome::Failed),
                ("null.alpha", BuildOutcome::Succeeded),
                ("deb.null.gamma", BuildOutcome::Succeeded),
            ]
        );
        assert_eq!(
            report.artifact_files,
            BTreeMap::from([
                ("out/alpha.ova".into(), "null.alpha".to_owned()),
                ("out/gamma.ova".into(), "deb.null.gamma".to_owned()),
            ])
        );
    }

    #[test]
    fn build_memory_is_bounded() {
        let mut report = Report::default();
        for i in 0..(MAX_BUILDS + 10) {
            report.observe(&format!("1,null.b{i},artifact-count,0"));
        }
        assert_eq!(report.builds.len(), MAX_BUILDS);
    }

    #[test]
    fn failures_prefer_build_errors_then_ui_errors() {
        let mut report = Report::default();
        report.observe("1,,ui,error,Build 'null.example' errored after 1 ms: boom");
        assert_eq!(
            report.failure_lines(),
            ["Build 'null.example' errored after 1 ms: boom"]
        );
        report.observe("1,,error-count,1");
        report.observe("1,null.example,error,Script exited with non-zero exit status: 1");
        assert_eq!(report.error_count, Some(1));
        report.observe("1,,ui,error,==> null.example: Build 'null.example' errored after 1 ms: Script exited with non-zero exit status: 1");
        assert_eq!(
            report.failure_lines(),
            [
                "null.example: Script exited with non-zero exit status: 1",
                "Build 'null.example' errored after 1 ms: boom",
            ]
        );
    }

    /// Real Packer 1.6.6 output (see `tests/fixtures/packer-output/README.md`).
    const CANCELLED: &str = include_str!("../../../../tests/fixtures/packer-output/cancelled.txt");
    const FAILED: &str = include_str!("../../../../tests/fixtures/packer-output/failed.txt");

    fn report_of(output: &str) -> Report {
        let mut report = Report::default();
        for line in output.lines() {
            assert!(parse_line(line).is_some(), "not machine-readable: {line}");
            report.observe(line);
        }
        report
    }

    #[test]
    fn recognises_a_cancel() {
        assert!(report_of(CANCELLED).cancelled);
        assert!(!report_of(FAILED).cancelled, "a failure is not a cancel");
    }

    #[test]
    fn explains_a_real_failure() {
        let report = report_of(FAILED);
        assert_eq!(report.error_count, Some(1));
        let lines = report.failure_lines();
        assert_eq!(
            lines[0],
            "null.fail: Script exited with non-zero exit status: 1.Allowed exit codes are: [0]"
        );
        assert!(
            lines.contains(
                &"==> null.fail: fixture: disk quota exceeded while writing the image".to_owned()
            ),
            "the script's own stderr explains it: {lines:#?}"
        );
    }

    #[test]
    fn error_memory_is_bounded() {
        let mut report = Report::default();
        for i in 0..10_000 {
            report.observe(&format!("1,,ui,error,line {i}"));
        }
        assert_eq!(report.ui_errors.len(), MAX_ERRORS);
        assert_eq!(report.ui_errors.back().unwrap(), "line 9999");
    }
}
