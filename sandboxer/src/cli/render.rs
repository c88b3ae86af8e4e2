//! Turning library results into text: tables and records on stdout, messages on stderr, JSON.
//!
//! Output is written through one buffered, locked handle per stream and flushed once, so a
//! long listing costs a handful of `write` calls, not several per row.

use std::io::{BufWriter, Write};

use camino::Utf8Path;
use jiff::Timestamp;
use serde::Serialize;

use crate::artifacts::{Inventory, PruneReport};
use crate::duration::{human_elapsed, human_remaining};
use crate::ext;
use crate::hub;
use crate::lifecycle::{GcReport, HostReport, Outcome, TeardownOutcome};
use crate::pool::Pool;
use crate::profile::{Catalog, Entry, InputRow};
use crate::record::Record;
use crate::shim::{Action, CheckReport, Include, InstallReport, State};

/// Buffered stdout; callers flush (errors, such as a closed pipe, surface there).
pub(super) fn stdout() -> BufWriter<std::io::StdoutLock<'static>> {
    BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// Writes one message line on stderr; a closed stderr is not worth failing for.
pub(super) fn note(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

pub(super) fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = stdout();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(&format!("{cell:<width$}"));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&header)?;
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells)?;
    }
    Ok(())
}

/// The pool's hosts: a table on stdout (a note on stderr says which pool file), or JSON.
pub(super) fn hosts(pool: &Pool, reports: &[HostReport], json: bool) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct Hosts<'a> {
            pool_file: Option<&'a camino::Utf8Path>,
            hosts: &'a [HostReport],
        }
        return self::json(&Hosts {
            pool_file: pool.path.as_deref(),
            hosts: reports,
        });
    }
    note(&match &pool.path {
        Some(path) => format!("pool file {path}"),
        None => "no pool file ($SANDBOXER_HOSTS, $XDG_CONFIG_HOME/sandboxer/hosts.toml): this machine only".to_owned(),
    });
    let dash = || "-".to_owned();
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|report| {
            let state = match (&report.error, report.reachable) {
                (None, _) => "ok".to_owned(),
                (Some(error), true) => format!("error: {error}"),
                (Some(error), false) => format!("unreachable: {error}"),
            };
            [
                report.name.clone(),
                report
                    .ssh
                    .clone()
                    .unwrap_or_else(|| "(this machine)".to_owned()),
                report.packer_version.clone().unwrap_or_else(dash),
                report
                    .running
                    .map_or_else(dash, |running| running.to_string()),
                match (report.free_slots, report.max_concurrent, report.running) {
                    (Some(free), Some(max), _) => format!("{free} of {max}"),
                    (None, None, Some(_)) => "no limit".to_owned(),
                    _ => dash(),
                },
                if report.labels.is_empty() {
                    dash()
                } else {
                    report.labels.join(",")
                },
                state,
            ]
        })
        .collect();
    let mut out = stdout();
    table(
        &mut out,
        [
            "HOST", "SSH", "PACKER", "RUNNING", "FREE", "LABELS", "STATE",
        ],
        &rows,
    )?;
    out.flush()?;
    Ok(())
}

/// "sandbox ID is ready", with each artifact, and how to reach it when it can be.
pub(super) fn describe_ready(record: &Record) -> String {
    let mut text = format!("sandbox {} is {}", record.id, record.state);
    if let Some(ssh) = &record.ssh {
        text.push_str(&format!(
            "\n  ssh {} (`sandboxer ssh {}`)",
            describe_ssh(ssh),
            record.id
        ));
    }
    for artifact in &record.artifacts {
        text.push_str(&format!("\n  artifact {}", describe_artifact(artifact)));
    }
    text
}

/// "sandbox ID is failed: reason", for the end of a followed log.
pub(super) fn describe_end(record: &Record) -> String {
    match &record.state_reason {
        Some(reason) => format!("sandbox {} is {}: {reason}", record.id, record.state),
        None => describe_ready(record),
    }
}

/// "PATH (N bytes, sha256 X)", and the build that made it when there were several.
fn describe_artifact(artifact: &crate::record::Artifact) -> String {
    let build = artifact
        .build
        .as_ref()
        .map(|build| format!(", from {build}"))
        .unwrap_or_default();
    format!(
        "{} ({} bytes, sha256 {}{build})",
        artifact.path, artifact.bytes, artifact.sha256
    )
}

fn time_left(record: &Record, now: Timestamp) -> String {
    if record.state.is_gone() {
        "-".to_owned()
    } else {
        human_remaining(record.expires_at.duration_since(now))
    }
}

pub(super) fn list(records: &[Record]) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|record| {
            [
                record.id.clone(),
                record.profile.clone(),
                record.mode.clone(),
                record.state.to_string(),
                format!(
                    "{} ago",
                    human_elapsed(now.duration_since(record.created_at))
                ),
                time_left(record, now),
            ]
        })
        .collect();
    let mut out = stdout();
    table(
        &mut out,
        ["ID", "PROFILE", "MODE", "STATE", "CREATED", "EXPIRES IN"],
        &rows,
    )?;
    out.flush()?;
    Ok(())
}

pub(super) fn show(record: &Record) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let mut text = String::new();
    let mut field =
        |name: &str, value: String| text.push_str(&format!("{:<11} {value}\n", format!("{name}:")));
    field("id", record.id.clone());
    field(
        "profile",
        format!("{} ({})", record.profile, record.profile_source),
    );
    field(
        "extension",
        format!("{} ({} mode)", record.extension, record.mode),
    );
    field("state", record.state.to_string());
    if let Some(reason) = &record.state_reason {
        field("reason", reason.clone());
    }
    field("created", record.created_at.to_string());
    let left = if record.state.is_gone() {
        String::new()
    } else {
        format!(" ({})", time_left(record, now))
    };
    field("expires", format!("{}{left}", record.expires_at));
    let slot = record
        .placement
        .slot
        .map(|slot| format!(" (slot {slot})"))
        .unwrap_or_default();
    field("placement", format!("{}{slot}", record.placement.host));
    if let Some(build_host) = &record.build_host {
        let dir = build_host.workdir.join(&record.id);
        let mut text = format!("{} ({})", build_host.host, build_host.ssh.describe());
        if build_host.dir_left {
            text.push_str(&format!(", its directory {dir} is still there"));
        }
        if build_host.processes.is_some() && !record.state.is_in_progress() {
            text.push_str("; what ran there may still run (`sandboxer gc` stops it)");
        }
        field("build host", text);
    }
    if let Some(owner) = record
        .owner
        .as_ref()
        .filter(|_| record.state.is_in_progress())
    {
        field(
            "owner",
            format!("sandboxer pid {} on {}", owner.pid, owner.hostname),
        );
    }
    if let Some(log) = &record.log {
        field("log", log.to_string());
    }
    if let Some(ssh) = &record.ssh {
        field("ssh", describe_ssh(ssh));
    }
    for forwarded in &record.forwarded_ports {
        let guest = forwarded
            .guest_port
            .map(|port| format!(" -> guest port {port}"))
            .unwrap_or_default();
        field(
            "forwarded",
            format!("port {}{guest}: {}", forwarded.port, forwarded.purpose),
        );
    }
    text.push_str("inputs:\n");
    for (name, value) in &record.inputs {
        text.push_str(&format!("  {name} = {value}\n"));
    }
    if !record.builds.is_empty() {
        text.push_str("builds:\n");
        for build in &record.builds {
            let outcome = match build.outcome {
                crate::record::BuildOutcome::Succeeded => "succeeded",
                crate::record::BuildOutcome::Failed => "failed",
            };
            text.push_str(&format!("  {} ({outcome})\n", build.name));
        }
    }
    if !record.artifacts.is_empty() {
        text.push_str("artifacts:\n");
        for artifact in &record.artifacts {
            text.push_str(&format!("  {}\n", describe_artifact(artifact)));
        }
    }
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `user@host:port (key PATH)`.
fn describe_ssh(ssh: &crate::ssh::SshTarget) -> String {
    let key = ssh
        .identity
        .as_ref()
        .map(|identity| format!(" (key {identity})"))
        .unwrap_or_default();
    format!("{}{key}", ssh.describe())
}

/// The stderr line for one teardown.
pub(super) fn teardown_message(outcome: &TeardownOutcome) -> String {
    match outcome {
        TeardownOutcome::TornDown(record) if record.mode == "attach" => {
            format!("sandbox {} detached (the VM was left as it is)", record.id)
        }
        TeardownOutcome::TornDown(record) => {
            let kept: String = record
                .artifacts
                .iter()
                .map(|artifact| format!("\n  kept {}", artifact.path))
                .collect();
            format!("sandbox {} torn down{kept}", record.id)
        }
        TeardownOutcome::AlreadyGone(record) => {
            format!("sandbox {} is already {}", record.id, record.state)
        }
    }
}

/// One line per gc entry on stderr, or the entries as JSON on stdout.
pub(super) fn gc(report: &GcReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&report.entries);
    }
    let mut stderr = std::io::stderr().lock();
    for entry in &report.entries {
        let verb = match entry.outcome {
            Outcome::Done => "",
            Outcome::Planned => "would ",
            Outcome::Skipped => "skipped ",
            Outcome::Failed => "failed to ",
        };
        let _ = writeln!(
            stderr,
            "{}: {verb}{}: {}",
            entry.id, entry.action, entry.detail
        );
    }
    if report.entries.is_empty() {
        let _ = writeln!(stderr, "nothing to collect");
    }
    Ok(())
}

/// `show --provenance`: what made the sandbox's artifacts, one fact per line.
pub(super) fn provenance(document: &crate::provenance::Document) -> anyhow::Result<()> {
    let mut text = String::new();
    let mut field =
        |name: &str, value: String| text.push_str(&format!("{:<11} {value}\n", format!("{name}:")));
    let sandbox = &document.sandbox;
    field(
        "sandbox",
        format!(
            "{} ({}, {} mode, {})",
            sandbox.id, sandbox.profile, sandbox.mode, sandbox.state
        ),
    );
    field("created", sandbox.created_at.to_string());
    if let Some(like) = &sandbox.like {
        field("made like", like.clone());
    }
    let build = &document.build;
    if let Some(template) = &build.template {
        field("template", template.path.to_string());
        field("sha256", template.sha256.clone());
        if template.files.len() > 1 {
            for file in &template.files {
                text.push_str(&format!("  {}  {}\n", file.sha256, file.path));
            }
        }
    }
    for var_file in &build.var_files {
        text.push_str(&format!(
            "{:<11} {} (sha256 {})\n",
            "var file:", var_file.path, var_file.sha256
        ));
    }
    if let Some(tool) = &build.tool {
        text.push_str(&format!(
            "{:<11} {} {}\n",
            format!("{}:", tool.name),
            tool.path,
            tool.version.as_deref().unwrap_or("(version unknown)")
        ));
    }
    if !document.builds.is_empty() {
        let builds: Vec<String> = document
            .builds
            .iter()
            .map(|run| {
                let outcome = match run.outcome {
                    crate::record::BuildOutcome::Succeeded => "succeeded",
                    crate::record::BuildOutcome::Failed => "failed",
                };
                format!("{} ({outcome})", run.name)
            })
            .collect();
        text.push_str(&format!("{:<11} {}\n", "builds:", builds.join(", ")));
    }
    if !build.variables.is_empty() {
        text.push_str("variables:\n");
        for (name, value) in &build.variables {
            text.push_str(&format!("  {name} = {value}\n"));
        }
    }
    if !document.artifacts.is_empty() {
        text.push_str("artifacts:\n");
        for artifact in &document.artifacts {
            let by = artifact
                .build
                .as_deref()
                .map(|build| format!(", from {build}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {} ({} bytes, sha256 {}{by})\n",
                artifact.path, artifact.bytes, artifact.sha256
            ));
        }
    }
    if !document.pruned_artifacts.is_empty() {
        text.push_str("pruned:\n");
        for pruned in &document.pruned_artifacts {
            text.push_str(&format!(
                "  {} ({} bytes, sha256 {}; pruned {} by {})\n",
                pruned.artifact.path,
                pruned.artifact.bytes,
                pruned.artifact.sha256,
                pruned.pruned_at,
                pruned.reason
            ));
        }
    }
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Warnings about what `artifacts/` holds out of order, on stderr.
pub(super) fn inventory_problems(inventory: &Inventory) {
    for (id, err) in &inventory.unreadable {
        note(&format!("warning: {id}: {err:#}"));
    }
    for path in &inventory.undescribed {
        note(&format!(
            "warning: {path} is described by no record and no provenance file; sandboxer leaves it alone"
        ));
    }
    for (id, path) in &inventory.missing {
        note(&format!(
            "warning: sandbox {id} lists artifact {path}, which is gone (removed by hand?)"
        ));
    }
    for (id, path) in &inventory.interrupted {
        note(&format!(
            "warning: sandbox {id}: {path} was being pruned when the prune stopped; `sandboxer gc` deletes it"
        ));
    }
}

/// A path under the state directory as `artifacts/<id>/x.ova`, anything else as it is.
fn short_path(path: &Utf8Path, root: &Utf8Path) -> String {
    path.strip_prefix(root)
        .map(|relative| relative.to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// `artifacts list`: a table and the total on stdout, or JSON.
pub(super) fn artifacts(
    inventory: &Inventory,
    root: &Utf8Path,
    as_json: bool,
) -> anyhow::Result<()> {
    let total = inventory.total_bytes();
    let live: u64 = inventory
        .artifacts
        .iter()
        .filter(|kept| kept.live)
        .map(|kept| kept.bytes)
        .sum();
    if as_json {
        let pairs = |pairs: &[(String, camino::Utf8PathBuf)]| -> Vec<serde_json::Value> {
            pairs
                .iter()
                .map(|(id, path)| serde_json::json!({"sandbox": id, "path": path}))
                .collect()
        };
        return json(&serde_json::json!({
            "artifacts": inventory.artifacts,
            "count": inventory.artifacts.len(),
            "total_bytes": total,
            "live_bytes": live,
            "undescribed": inventory.undescribed,
            "missing": pairs(&inventory.missing),
            "interrupted": pairs(&inventory.interrupted),
        }));
    }
    if inventory.artifacts.is_empty() {
        note(&format!("no kept artifacts in {root}"));
        return Ok(());
    }
    let mut out = stdout();
    let now = Timestamp::now();
    let rows: Vec<[String; 6]> = inventory
        .artifacts
        .iter()
        .map(|kept| {
            let state = if kept.recorded {
                kept.state.to_string()
            } else {
                format!("{} (record purged)", kept.state)
            };
            [
                kept.sandbox.clone(),
                kept.profile.clone(),
                state,
                crate::size::human(kept.bytes),
                human_elapsed(now.duration_since(kept.created_at)),
                short_path(&kept.path, root),
            ]
        })
        .collect();
    table(
        &mut out,
        ["SANDBOX", "PROFILE", "STATE", "SIZE", "AGE", "PATH"],
        &rows,
    )?;
    let live_part = if live > 0 {
        format!(
            " ({} of it live sandboxes', never pruned)",
            crate::size::human(live)
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "total: {} in {} artifact(s){live_part}",
        crate::size::human(total),
        inventory.artifacts.len()
    )?;
    out.flush()?;
    Ok(())
}

/// `artifacts prune`: one line per artifact and what it frees on stderr, or the report as JSON.
pub(super) fn prune(report: &PruneReport, dry_run: bool, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    let mut stderr = std::io::stderr().lock();
    for entry in &report.entries {
        let verb = match entry.outcome {
            Outcome::Done => "pruned",
            Outcome::Planned => "would prune",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed to prune",
        };
        let why = entry
            .error
            .as_deref()
            .map(|error| format!(": {error}"))
            .unwrap_or_default();
        let _ = writeln!(
            stderr,
            "{verb} {} ({}, sandbox {}, {}; {}){why}",
            entry.path,
            crate::size::human(entry.bytes),
            entry.sandbox,
            entry.profile,
            entry.reason
        );
    }
    let pruned = report
        .entries
        .iter()
        .filter(|entry| matches!(entry.outcome, Outcome::Done | Outcome::Planned))
        .count();
    let summary = match (pruned, dry_run) {
        (0, _) => format!(
            "nothing to prune; {} kept",
            crate::size::human(report.kept_bytes)
        ),
        (n, true) => format!(
            "would free {} ({n} artifact(s)); {} would stay",
            crate::size::human(report.freed_bytes),
            crate::size::human(report.kept_bytes)
        ),
        (n, false) => format!(
            "freed {} ({n} artifact(s)); {} kept",
            crate::size::human(report.freed_bytes),
            crate::size::human(report.kept_bytes)
        ),
    };
    let _ = writeln!(stderr, "{summary}");
    if let Some(short) = &report.short_of_target {
        let _ = writeln!(stderr, "note: {short}");
    }
    Ok(())
}

pub(super) fn profiles_list(catalog: &Catalog, as_json: bool) -> anyhow::Result<()> {
    let summaries: Vec<_> = catalog.entries().map(Entry::summary).collect();
    if as_json {
        return json(&summaries);
    }
    let rows: Vec<[String; 5]> = summaries
        .iter()
        .map(|summary| {
            let mut source = summary.source.clone();
            if !summary.shadows.is_empty() {
                source.push_str(&format!(" (shadows {})", summary.shadows.join(", ")));
            }
            [
                summary.id.to_owned(),
                summary.extension.to_owned(),
                summary.mode.unwrap_or("-").to_owned(),
                summary.ttl.clone(),
                source,
            ]
        })
        .collect();
    let mut out = stdout();
    table(
        &mut out,
        ["ID", "EXTENSION", "MODE", "TTL", "SOURCE"],
        &rows,
    )?;
    out.flush()?;
    Ok(())
}

pub(super) fn profile_show(
    entry: &Entry,
    extension: &dyn ext::Extension,
    as_json: bool,
) -> anyhow::Result<()> {
    let profile = &entry.profile;
    let inputs = profile.input_rows();
    if as_json {
        /// An input the extension takes in the profile's mode.
        #[derive(Serialize)]
        struct Accepts<'a> {
            name: &'a str,
            description: &'a str,
            required: bool,
            list: bool,
            default: Option<&'a str>,
            allowed: &'a [&'a str],
        }
        #[derive(Serialize)]
        struct Full<'a> {
            #[serde(flatten)]
            profile: crate::profile::Summary<'a>,
            inputs: &'a [InputRow],
            sensitive_inputs: &'a [String],
            accepts: Vec<Accepts<'a>>,
        }
        let mode = profile.mode();
        let accepts = extension
            .input_schema()
            .specs
            .iter()
            .filter(|spec| spec.applies_to(mode))
            .map(|spec| Accepts {
                name: spec.name,
                description: spec.description,
                required: spec.required,
                list: spec.kind == crate::inputs::Kind::List,
                default: spec.default,
                allowed: spec.allowed,
            })
            .collect();
        return json(&Full {
            profile: entry.summary(),
            inputs: &inputs,
            sensitive_inputs: &profile.sensitive_inputs,
            accepts,
        });
    }
    let mut text = String::new();
    text.push_str(&format!("id:          {}\n", profile.id));
    text.push_str(&format!("description: {}\n", profile.description));
    text.push_str(&format!("source:      {}\n", profile.source));
    for shadowed in &entry.shadowed {
        text.push_str(&format!("shadows:     {shadowed}\n"));
    }
    text.push_str(&format!(
        "extension:   {} ({})\n",
        extension.id(),
        extension.summary()
    ));
    text.push_str(&format!("ttl:         {}\n", profile.ttl));
    if let Some(retention) = profile.retention {
        text.push_str(&format!("retention:   {retention}\n"));
    }
    let placement = &profile.placement;
    let mut written = if placement.pool {
        vec!["pool = true".to_owned()]
    } else {
        vec![format!("host = {}", placement.host)]
    };
    if !placement.labels.is_empty() {
        written.push(format!("labels = {}", placement.labels.join(", ")));
    }
    if let Some(max) = placement.max_concurrent {
        written.push(format!("max_concurrent = {max}"));
    }
    if let Some(pool_file) = &placement.pool_file {
        written.push(format!("pool_file = {pool_file}"));
    }
    text.push_str(&format!("placement:   {}\n", written.join(", ")));
    text.push_str(&format!("on_failure:  {}\n", profile.on_failure));
    let labels = [
        ("workstream", &profile.state_hub.workstream),
        ("task", &profile.state_hub.task),
    ]
    .iter()
    .filter_map(|(key, value)| value.as_ref().map(|value| format!("{key} = {value:?}")))
    .collect::<Vec<_>>();
    if !labels.is_empty() {
        text.push_str(&format!("state_hub:   {}\n", labels.join(", ")));
    }
    text.push_str("inputs:\n");
    let width = inputs
        .iter()
        .map(|input| input.name.len() + input.value.quoted().chars().count() + 3)
        .max()
        .unwrap_or(0);
    for input in &inputs {
        let assignment = format!("{} = {}", input.name, input.value.quoted());
        text.push_str(&format!("  {assignment:<width$}  # {}\n", input.from));
    }
    if !profile.sensitive_inputs.is_empty() {
        text.push_str(&format!(
            "sensitive:   {}\n",
            profile.sensitive_inputs.join(", ")
        ));
    }
    let mode = profile.mode();
    let in_mode = mode
        .map(|mode| format!(" in {mode} mode"))
        .unwrap_or_default();
    text.push_str(&format!(
        "{}{in_mode} accepts:\n{}",
        extension.id(),
        extension.input_schema().describe_mode(mode)
    ));
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// One line per check (`ok    name  detail`), the fix indented below anything not ok.
pub(super) fn doctor(checks: &[crate::doctor::Check], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&checks);
    }
    let width = checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    let mut out = stdout();
    for check in checks {
        writeln!(
            out,
            "{:<4}  {:<width$}  {}",
            check.status.as_str(),
            check.name,
            check.detail
        )?;
        if let Some(fix) = &check.fix {
            writeln!(out, "{:<4}  {:<width$}  fix: {fix}", "", "")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `hub status`: the URL, what waits per sandbox, the last delivery error.
pub(super) fn hub_status(status: &hub::Status, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(status);
    }
    let mut text = String::new();
    match (&status.url, &status.url_from) {
        (Some(url), from) => text.push_str(&format!(
            "State Hub: {url} (from {}), {}\n",
            from.as_deref().unwrap_or("?"),
            if status.token {
                "with a token"
            } else {
                "without a token"
            }
        )),
        (None, _) => text.push_str(
            "State Hub: off (set STATE_HUB_URL, or `url` in the [state_hub] table of the config file)\n",
        ),
    }
    if status.waiting.is_empty() {
        text.push_str("waiting: nothing\n");
    } else {
        text.push_str("waiting:\n");
        for waiting in &status.waiting {
            let mut line = format!("  {}  {} event(s)", waiting.sandbox, waiting.events);
            if let Some(oldest) = &waiting.oldest {
                line.push_str(&format!(", oldest {oldest}"));
            }
            if waiting.in_use {
                line.push_str(", being delivered by a running sandboxer");
            }
            if let Some(error) = &waiting.error {
                line.push_str(&format!(", unreadable: {error}"));
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    match &status.health.last_error {
        Some(error) => text.push_str(&format!(
            "last delivery error: {} at {}\n",
            error.message, error.at
        )),
        None => text.push_str("last delivery error: none\n"),
    }
    if let Some(at) = &status.health.last_delivered_at {
        text.push_str(&format!("last delivery: {at}\n"));
    }
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `hub flush`: one line per sandbox on stderr, or the outcomes as JSON on stdout.
pub(super) fn hub_flush(flushed: &[hub::Flushed], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&flushed);
    }
    let mut stderr = std::io::stderr().lock();
    for entry in flushed {
        let _ = match &entry.skipped {
            Some(why) => writeln!(stderr, "{}: skipped: {why}", entry.sandbox),
            None => writeln!(
                stderr,
                "{}: delivered {} event(s)",
                entry.sandbox, entry.delivered
            ),
        };
    }
    if flushed.is_empty() {
        let _ = writeln!(stderr, "nothing waits in the spool");
    }
    Ok(())
}

/// What `shim install` did, one line per file on stderr; the include line on stdout when
/// someone has to add it, so it can be pasted or appended.
pub(super) fn shim_install(report: &InstallReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    for file in &report.files {
        let previous = file
            .previous
            .as_ref()
            .map(|version| format!(" (was sandboxer {version}'s)"))
            .unwrap_or_default();
        note(&match file.action {
            Action::Created => format!("created {}", file.path),
            Action::Updated => format!("updated {}{previous}", file.path),
            Action::Unchanged => format!("unchanged {}", file.path),
            Action::OverwroteEdits => format!("overwrote hand edits in {}", file.path),
        });
    }
    match (&report.makefile.path, report.makefile.include) {
        (Some(path), Include::Present) => {
            note(&format!("{path} includes {}", crate::shim::INCLUDED_FILE));
            return Ok(());
        }
        (Some(path), Include::Added) => {
            note(&format!("added `{}` to {path}", report.include_line));
            return Ok(());
        }
        (Some(path), _) => note(&format!(
            "add this line to {path} (or rerun with --edit-makefile):"
        )),
        (None, _) => note(&format!(
            "{} has no Makefile; add this line to the Makefile that runs there:",
            report.dest
        )),
    }
    let mut out = stdout();
    writeln!(out, "{}", report.include_line)?;
    out.flush()?;
    Ok(())
}

/// One line per shim file on stdout (state, path, the difference in words), followed by the
/// unified diff of a changed file; a note on stderr when the Makefile lacks the include line.
pub(super) fn shim_check(report: &CheckReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    let mut out = stdout();
    for file in &report.files {
        let state = match file.state {
            State::Current => "ok",
            State::Missing => "missing",
            State::Edited => "edited",
            State::Outdated => "outdated",
            State::NotExecutable => "mode",
        };
        writeln!(out, "{state:<8} {}: {}", file.path, file.detail)?;
        if let Some(diff) = &file.diff {
            out.write_all(diff.as_bytes())?;
        }
    }
    out.flush()?;
    if let (Some(path), Include::Absent) = (&report.makefile.path, report.makefile.include) {
        note(&format!(
            "note: {path} does not include {}; `{}` there adds `make remote-build`",
            crate::shim::INCLUDED_FILE,
            crate::shim::INCLUDE_LINE
        ));
    }
    Ok(())
}
