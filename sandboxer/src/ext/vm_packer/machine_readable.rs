//! Packer's `-machine-readable` stream: decoding lines and folding them into a build report.
//!
//! Each line is `timestamp,target,type,data...`. Inside a field `,` is written
//! `%!(PACKER_COMMA)`, a newline `\n` and a carriage return `\r` (two characters each).
//! Backslashes are not escaped, so decoding is slightly ambiguous; we accept that, as Packer's
//! own consumers do.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use std::borrow::Cow;

use camino::Utf8PathBuf;

use crate::progress::{Level, Step, StepKind, StepOutcome};
use crate::record::{BuildOutcome, BuildRun};
use crate::redact::Redactor;

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
    // One pass, jumping between the only bytes an escape starts with: this runs on every field
    // of every line a build prints.
    let mut decoded = String::with_capacity(field.len());
    let mut rest = 0;
    for at in memchr::memchr2_iter(b'%', b'\\', field.as_bytes()) {
        if at < rest {
            continue;
        }
        let tail = &field[at..];
        let (replacement, escape_len) = if tail.starts_with("%!(PACKER_COMMA)") {
            (",", "%!(PACKER_COMMA)".len())
        } else if tail.starts_with("\\n") {
            ("\n", 2)
        } else if tail.starts_with("\\r") {
            ("\r", 2)
        } else {
            continue;
        };
        decoded.push_str(&field[rest..at]);
        decoded.push_str(replacement);
        rest = at + escape_len;
    }
    decoded.push_str(&field[rest..]);
    decoded
}

/// Redacts one raw line, leaving its timestamp and type alone: a short secret (`1`, `ui`) must
/// hide what a build printed, never break the line's structure (a redacted timestamp would make
/// the line unreadable, and artifact and cancel lines would be missed). A line that is not
/// machine-readable is redacted whole. `cut`: the line was cut short, and a secret may straddle
/// its end.
pub fn redact_line<'a>(redactor: &Redactor, raw: &'a str, cut: bool) -> Cow<'a, str> {
    let whole = |text: &'a str| {
        if cut {
            redactor.redact_cut(text)
        } else {
            redactor.redact(text)
        }
    };
    let Some((timestamp, rest)) = raw.split_once(',') else {
        return whole(raw);
    };
    let Some((target, rest)) = rest.split_once(',') else {
        return whole(raw);
    };
    let (kind, data) = rest.split_once(',').unwrap_or((rest, ""));
    let structural =
        |field: &str, allowed: fn(u8) -> bool| !field.is_empty() && field.bytes().all(allowed);
    if !structural(timestamp, |b| b.is_ascii_digit())
        || !structural(kind.trim_end(), |b| b.is_ascii_lowercase() || b == b'-')
    {
        return whole(raw);
    }
    let target_shown = redactor.redact(target);
    let data_shown = whole(data);
    if matches!(target_shown, Cow::Borrowed(_)) && matches!(data_shown, Cow::Borrowed(_)) {
        return Cow::Borrowed(raw);
    }
    let mut line = String::with_capacity(raw.len() + 16);
    line.push_str(timestamp);
    line.push(',');
    line.push_str(&target_shown);
    line.push(',');
    line.push_str(kind);
    if rest.len() > kind.len() {
        line.push(',');
        line.push_str(&data_shown);
    }
    Cow::Owned(line)
}

/// Applies the same escaping Packer applies, so a secret can be found in raw lines too.
pub fn encode(text: &str) -> String {
    text.replace(',', "%!(PACKER_COMMA)")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// The text Packer prints when a build was cancelled (it exits 1 as for any failure).
pub const CANCEL_LINE: &str = "Cleanly cancelled builds after being interrupted.";

/// What Packer says as soon as it starts cancelling; builds it then reports as "finished" were
/// in fact cut short.
pub const CANCELLING_LINE: &str = "Cancelling build after receiving interrupt";

/// Finders for the cancel lines, built once: every `ui` line is searched for both, and
/// `str::contains` would build a new searcher for each.
static CANCELLED: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(CANCEL_LINE.as_bytes()));
static CANCELLING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(CANCELLING_LINE.as_bytes()));

fn mentions(text: &str, finder: &memchr::memmem::Finder<'_>) -> bool {
    text.len() >= finder.needle().len() && finder.find(text.as_bytes()).is_some()
}

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
    /// Packer started cancelling: every step still open ends cancelled.
    cancelling: bool,
    /// The step each build is in, and since when.
    open_steps: BTreeMap<String, (Step, Instant)>,
}
/// What a line means for the person watching.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    Output(Level, String),
    Artifact(Utf8PathBuf),
    StepStarted(Step),
    StepFinished {
        step: Step,
        outcome: StepOutcome,
        error: Option<String>,
        duration: Duration,
    },
}

/// Headlines that start a provisioner, as Packer's built-in provisioners announce themselves.
const PROVISIONER_STARTS: &[&str] = &[
    "Provisioning with",
    "Running local shell script",
    "Running local command",
    "Uploading ",
    "Executing Ansible",
    "Pausing ",
];

/// Headlines that report on the current step rather than start one.
const NOT_A_STEP: &[&str] = &["Provisioning step had errors"];

/// What a `say` headline (`==> BUILD: TEXT`) announces: the step it starts, if any.
fn step_of(text: &str) -> Option<Step> {
    let rest = text.strip_prefix("==> ")?;
    let (build, said) = rest.split_once(": ")?;
    // `==> null.a (shell-local): ...` is a post-processor talking within its own step.
    if build.is_empty() || build.contains([' ', '(']) {
        return None;
    }
    let said = said.trim();
    if NOT_A_STEP.iter().any(|prefix| said.starts_with(prefix)) {
        return None;
    }
    let (kind, name) = if let Some(post) = said.strip_prefix("Running post-processor:") {
        // "Running post-processor: NAME (type TYPE)", NAME empty when the template gives none.
        let post = post.trim();
        let name = match post.rsplit_once("(type ") {
            Some((name, kind)) => {
                let kind = kind.trim_end_matches(')');
                match name.trim() {
                    "" => kind.to_owned(),
                    name => format!("{name} ({kind})"),
                }
            }
            None => post.to_owned(),
        };
        (StepKind::PostProcessor, name)
    } else if PROVISIONER_STARTS
        .iter()
        .any(|prefix| said.starts_with(prefix))
    {
        (StepKind::Provisioner, said.to_owned())
    } else {
        (StepKind::Build, said.to_owned())
    };
    Some(Step {
        build: build.to_owned(),
        kind,
        name,
    })
}

/// `Build 'NAME' finished after ...` / `Build 'NAME' errored after ...: WHY`.
fn build_end(text: &str) -> Option<(&str, Option<&str>)> {
    let rest = text.trim_start().strip_prefix("Build '")?;
    let (build, rest) = rest.split_once('\'')?;
    if rest.starts_with(" finished after") {
        Some((build, None))
    } else if rest.starts_with(" errored after") {
        let why = rest.split_once(": ").map_or("errored", |(_, why)| why);
        Some((build, Some(why)))
    } else {
        None
    }
}

impl Report {
    /// Sandboxer asked Packer to cancel (SIGINT to its group): a step that ends from now on
    /// ends because of it, even when the interrupt reached a provisioner's script before
    /// Packer's own handler said "Cancelling build".
    pub fn interrupted(&mut self) {
        self.cancelling = true;
    }

    /// Folds one raw line into the report and tells `notify` what it means, in order: a
    /// headline finishes the build's previous step and starts the next one before it is shown.
    pub fn observe(&mut self, raw: &str, mut notify: impl FnMut(Notice)) {
        let Some(line) = parse_line(raw) else {
            let text = raw.trim_end().to_owned();
            if text.is_empty() {
                return;
            }
            push_bounded(&mut self.stray_lines, text.clone());
            return notify(Notice::Output(Level::Error, text));
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
                if mentions(text, &CANCELLING) {
                    self.cancelling = true;
                }
                if mentions(text, &CANCELLED) {
                    self.cancelled = true;
                    self.finish_steps(StepOutcome::Cancelled, &mut notify);
                }
                if level == Level::Say
                    && let Some(step) = step_of(text)
                {
                    self.finish_step(
                        &step.build.clone(),
                        StepOutcome::Succeeded,
                        None,
                        &mut notify,
                    );
                    self.open_steps
                        .insert(step.build.clone(), (step.clone(), Instant::now()));
                    notify(Notice::StepStarted(step));
                } else if let Some((build, error)) = build_end(text) {
                    let outcome = match error {
                        _ if self.cancelling || self.cancelled => StepOutcome::Cancelled,
                        None => StepOutcome::Succeeded,
                        Some(_) => StepOutcome::Failed,
                    };
                    self.finish_step(build, outcome, error, &mut notify);
                }
                notify(Notice::Output(level, text.clone()));
            }
            ("artifact-count", _) if !line.target.is_empty() => {
                self.build_ran(&line.target, BuildOutcome::Succeeded);
            }
            ("artifact", [_index, field, _file_index, path, ..]) if field == "file" => {
                let path = Utf8PathBuf::from(path);
                if !self.artifact_files.contains_key(&path) {
                    self.artifact_files
                        .insert(path.clone(), line.target.clone());
                    notify(Notice::Artifact(path));
                }
            }
            ("error-count", [count, ..]) => {
                self.error_count = count.parse().ok();
            }
            ("error", [message, ..]) => {
                if !line.target.is_empty() {
                    self.build_ran(&line.target, BuildOutcome::Failed);
                }
                push_bounded(
                    &mut self.build_errors,
                    (line.target.clone(), message.clone()),
                );
            }
            _ => {}
        }
    }

    /// Finishes the step `build` is in, if any.
    fn finish_step(
        &mut self,
        build: &str,
        outcome: StepOutcome,
        error: Option<&str>,
        notify: &mut impl FnMut(Notice),
    ) {
        if let Some((step, started)) = self.open_steps.remove(build) {
            notify(Notice::StepFinished {
                step,
                outcome,
                error: (outcome == StepOutcome::Failed)
                    .then(|| error.unwrap_or("failed").to_owned()),
                duration: started.elapsed(),
            });
        }
    }

    /// Finishes every step still open (when Packer exits or cancels), so each started step has
    /// an end.
    pub fn finish_steps(&mut self, outcome: StepOutcome, notify: &mut impl FnMut(Notice)) {
        let builds: Vec<String> = self.open_steps.keys().cloned().collect();
        for build in builds {
            self.finish_step(&build, outcome, None, notify);
        }
    }

    /// The step most recently started that is still running, for heartbeats.
    pub fn current_step(&self) -> Option<&Step> {
        self.open_steps
            .values()
            .max_by_key(|(_, started)| *started)
            .map(|(step, _)| step)
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

    fn observe(report: &mut Report, line: &str) -> Vec<Notice> {
        let mut notices = Vec::new();
        report.observe(line, |notice| notices.push(notice));
        notices
    }

    fn steps(notices: &[Notice]) -> Vec<String> {
        notices
            .iter()
            .filter_map(|notice| match notice {
                Notice::StepStarted(step) => Some(format!(
                    "start {} {} {}",
                    step.build,
                    step.kind.as_str(),
                    step.name
                )),
                Notice::StepFinished {
                    step,
                    outcome,
                    error,
                    ..
                } => Some(format!(
                    "end {} {} {}{}",
                    step.build,
                    step.name,
                    outcome.as_str(),
                    error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn steps_start_and_finish_per_build_from_headlines() {
        // As Packer 1.6.6 prints two parallel null builds with shell-local provisioners and a
        // manifest post-processor, then one failing build.
        let lines = [
            "1,,ui,say,==> null.a: Running local shell script: /tmp/packer-shell1",
            "1,,ui,say,==> null.b: Running local shell script: /tmp/packer-shell2",
            "1,,ui,message,    null.a: hi from a",
            "1,,ui,say,==> null.a: Running post-processor:  (type manifest)",
            "1,,ui,say,==> null.a (manifest): Writing m.json",
            "1,,ui,say,==> null.b: Running post-processor: keep (type artifice)",
            "1,,ui,say,Build 'null.a' finished after 234 milliseconds 936 microseconds.",
            "1,,ui,say,==> null.c: Running local shell script: /tmp/packer-shell3",
            "1,,ui,say,==> null.c: Provisioning step had errors: Running the cleanup provisioner%!(PACKER_COMMA) if present...",
            "1,,ui,error,Build 'null.c' errored after 7 milliseconds: Script exited with non-zero exit status: 1",
        ];
        let mut report = Report::default();
        let mut notices = Vec::new();
        for line in lines {
            notices.extend(observe(&mut report, line));
        }
        assert_eq!(
            steps(&notices),
            [
                "start null.a provisioner Running local shell script: /tmp/packer-shell1",
                "start null.b provisioner Running local shell script: /tmp/packer-shell2",
                "end null.a Running local shell script: /tmp/packer-shell1 succeeded",
                "start null.a post-processor manifest",
                "end null.b Running local shell script: /tmp/packer-shell2 succeeded",
                "start null.b post-processor keep (artifice)",
                "end null.a manifest succeeded",
                "start null.c provisioner Running local shell script: /tmp/packer-shell3",
                "end null.c Running local shell script: /tmp/packer-shell3 failed: Script exited with non-zero exit status: 1",
            ]
        );
        assert_eq!(report.current_step().unwrap().build, "null.b");
        let mut rest = Vec::new();
        report.finish_steps(StepOutcome::Failed, &mut |notice| rest.push(notice));
        assert_eq!(steps(&rest), ["end null.b keep (artifice) failed: failed"]);
        assert!(report.current_step().is_none());
    }

    #[test]
    fn a_cancel_finishes_open_steps_as_cancelled() {
        let mut report = Report::default();
        observe(
            &mut report,
            "1,,ui,say,==> null.a: Running local shell script: x",
        );
        let notices = observe(&mut report, &format!("1,,ui,say,{CANCEL_LINE}"));
        assert_eq!(
            steps(&notices),
            ["end null.a Running local shell script: x cancelled"]
        );
    }

    #[test]
    fn a_build_packer_calls_finished_after_an_interrupt_was_cancelled() {
        let mut report = Report::default();
        observe(
            &mut report,
            "1,,ui,say,==> null.gate: Running local shell script: x",
        );
        observe(&mut report, &format!("1,,ui,error,{CANCELLING_LINE}"));
        let notices = observe(
            &mut report,
            "1,,ui,say,Build 'null.gate' finished after 2 seconds.",
        );
        assert_eq!(
            steps(&notices),
            ["end null.gate Running local shell script: x cancelled"]
        );
    }

    #[test]
    fn builder_headlines_are_build_steps() {
        let mut report = Report::default();
        let notices = observe(
            &mut report,
            "1,,ui,say,==> qemu.vm: Starting VM%!(PACKER_COMMA) booting from disk...",
        );
        assert_eq!(
            steps(&notices),
            ["start qemu.vm build Starting VM, booting from disk..."]
        );
    }

    #[test]
    fn a_short_secret_never_breaks_a_line() {
        let redactor = Redactor::new(["1".to_owned()], &[encode]);
        let line = "1795746248,,ui,message,    null.x: token=1\n";
        let shown = redact_line(&redactor, line, false);
        assert_eq!(
            shown,
            "1795746248,,ui,message,    null.x: token=<redacted>\n"
        );
        let mut report = Report::default();
        report.observe(
            &redact_line(
                &redactor,
                &format!("1795746249,,ui,say,{CANCEL_LINE}"),
                false,
            ),
            |_| {},
        );
        assert!(report.cancelled, "the cancel line is still recognised");
        // Not machine-readable: redacted whole.
        assert_eq!(
            redact_line(&redactor, "panic: 1 thing", false),
            "panic: <redacted> thing"
        );
        // Nothing to hide: the line itself, not a copy.
        assert!(matches!(
            redact_line(&redactor, "1700000000,,ui,say,ok", false),
            Cow::Borrowed(_)
        ));
        let redactor = Redactor::new(["ui".to_owned()], &[encode]);
        assert_eq!(
            redact_line(&redactor, "1,,ui,message,log in as ui", false),
            "1,,ui,message,log in as <redacted>"
        );
    }

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
        let mut notices = Vec::new();
        for line in lines {
            report.observe(line, |notice| notices.push(notice));
        }
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
            observe(&mut report, line);
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
            observe(&mut report, &format!("1,null.b{i},artifact-count,0"));
        }
        assert_eq!(report.builds.len(), MAX_BUILDS);
    }

    #[test]
    fn failures_prefer_build_errors_then_ui_errors() {
        let mut report = Report::default();
        observe(
            &mut report,
            "1,,ui,error,Build 'null.example' errored after 1 ms: boom",
        );
        assert_eq!(
            report.failure_lines(),
            ["Build 'null.example' errored after 1 ms: boom"]
        );
        observe(&mut report, "1,,error-count,1");
        observe(
            &mut report,
            "1,null.example,error,Script exited with non-zero exit status: 1",
        );
        assert_eq!(report.error_count, Some(1));
        observe(
            &mut report,
            "1,,ui,error,==> null.example: Build 'null.example' errored after 1 ms: Script exited with non-zero exit status: 1",
        );
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
            observe(&mut report, line);
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
            observe(&mut report, &format!("1,,ui,error,line {i}"));
        }
        assert_eq!(report.ui_errors.len(), MAX_ERRORS);
        assert_eq!(report.ui_errors.back().unwrap(), "line 9999");
    }
}
