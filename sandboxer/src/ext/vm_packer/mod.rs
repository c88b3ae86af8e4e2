//! `ext.vm-packer`: VM images built by HashiCorp Packer (build mode); attach mode comes later.

pub mod machine_readable;
pub mod runner;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::LineWriter;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use super::{Extension, Host, OnFailure, ProvisionContext, Provisioned, describe_artifact};
use crate::error::{Error, ErrorKind, usage};
use crate::inputs::{self, InputSchema, InputSpec, Inputs};
use crate::progress::Event;
use crate::record::Record;
use crate::redact::Redactor;
use crate::registry::SandboxDirs;
use template::Template;

/// The `ext.vm-packer` extension.
#[derive(Debug)]
pub struct VmPacker;

pub const ID: &str = "ext.vm-packer";

/// Free-form inputs `var.NAME=value` become `-var NAME=value`.
const VAR_PREFIX: &str = "var.";

static SPECS: [InputSpec; 4] = [
    InputSpec {
        name: "mode",
        required: false,
        default: Some("build"),
        allowed: &["build", "attach"],
        description: "build: run a Packer build and keep its OVA; attach: use an existing VM",
    },
    InputSpec {
        name: "packer_template",
        required: true,
        default: None,
        allowed: &[],
        description: "template file (*.pkr.hcl, *.pkr.json, legacy *.json) or directory; relative to the current directory",
    },
    InputSpec {
        name: "vm_name",
        required: true,
        default: None,
        allowed: &[],
        description: "names the VM and its files: letters, digits, `.`, `_`, `-`",
    },
    InputSpec {
        name: "project",
        required: false,
        default: None,
        allowed: &[],
        description: "the project a build machine is for; passed as -var project=... when the template declares it",
    },
];

static SCHEMA: InputSchema = InputSchema {
    specs: &SPECS,
    free_form: Some((
        VAR_PREFIX,
        "passed to Packer as -var NAME=value (only variables the template declares)",
    )),
};

/// Variables sandboxer itself sets when the template declares them.
const OWNED_VARIABLES: [&str; 3] = ["vm_name", "output_directory", "placement_host"];

impl Extension for VmPacker {
    fn id(&self) -> &'static str {
        ID
    }

    fn summary(&self) -> &'static str {
        "VM images built by HashiCorp Packer; build mode keeps the OVA after teardown"
    }

    fn input_schema(&self) -> &'static InputSchema {
        &SCHEMA
    }

    fn prepare(&self, inputs: &mut Inputs, host: &Host) -> anyhow::Result<()> {
        if inputs.get("mode") == Some("attach") {
            return Err(usage(
                "ext.vm-packer attach mode is not available yet; use --input mode=build, or a profile in build mode",
            ));
        }
        inputs::require(ID, &SCHEMA, inputs, &["packer_template", "vm_name"])?;
        for name in ["vm_name", "project"] {
            if let Some(value) = inputs.get(name) {
                check_name(name, value)?;
            }
        }
        for (name, _) in inputs.with_prefix(VAR_PREFIX) {
            if OWNED_VARIABLES.contains(&name) {
                return Err(usage(format!(
                    "input `{VAR_PREFIX}{name}` is set by sandboxer itself; use the `{name}` input instead{}",
                    if name == "output_directory" {
                        " (sandboxer owns the output directory)"
                    } else {
                        ""
                    }
                )));
            }
        }
        let template = template::locate(
            required(inputs, "packer_template")?,
            &host.cwd,
            &host.cache_dir,
        )?;
        if let Some(declared) = &template.variables {
            let unknown: Vec<&str> = inputs
                .with_prefix(VAR_PREFIX)
                .map(|(name, _)| name)
                .filter(|name| !declared.contains_key(*name))
                .collect();
            if let Some(name) = unknown.first() {
                let names: Vec<&str> = declared.keys().map(String::as_str).collect();
                let hint = crate::error::did_you_mean(name, names.iter().copied())
                    .map(|near| format!("; did you mean `{VAR_PREFIX}{near}`?"))
                    .unwrap_or_default();
                return Err(usage(format!(
                    "input `{VAR_PREFIX}{name}`: template {} declares no variable `{name}`{hint} (declared: {})",
                    required(inputs, "packer_template")?,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        }
        for name in template.sensitive_variables() {
            let input = format!("{VAR_PREFIX}{name}");
            inputs.mark_sensitive(&input);
        }
        runner::find_packer(host.packer.as_deref()).map_err(|err| usage(format!("{err:#}")))?;
        Ok(())
    }

    fn provision(&self, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
        let on_failure = ctx.on_failure;
        let dirs = ctx.dirs;
        let built = build(ctx);
        // Packer's TMPDIR goes whatever happened: Packer sometimes leaves its temp scripts there,
        // with template variables (secrets too) interpolated in clear.
        let mut leftovers = vec![&dirs.work];
        if built.is_err() && on_failure == OnFailure::Cleanup {
            // The log stays: it is the only account of what went wrong.
            leftovers.push(&dirs.output);
        }
        for dir in leftovers {
            if let Err(err) = remove_dir_if_present(dir) {
                return match built {
                    Ok(_) => Err(err),
                    Err(built) => Err(built.context(format!("also failed to clean up: {err:#}"))),
                };
            }
        }
        built
    }

    fn teardown(&self, record: &mut Record, dirs: &SandboxDirs) -> anyhow::Result<()> {
        // Keep OVAs: move them out of the sandbox's directory before removing its working files.
        for artifact in &mut record.artifacts {
            let root = dirs
                .root
                .canonicalize_utf8()
                .unwrap_or_else(|_| dirs.root.clone());
            if !is_ova(&artifact.path) || !artifact.path.starts_with(&root) {
                continue;
            }
            let kept = dirs
                .kept_artifacts
                .join(artifact.path.file_name().unwrap_or("artifact.ova"));
            if artifact.path.exists() {
                std::fs::create_dir_all(&dirs.kept_artifacts)
                    .with_context(|| format!("creating {}", dirs.kept_artifacts))?;
                std::fs::rename(&artifact.path, &kept)
                    .with_context(|| format!("moving {} to {kept}", artifact.path))?;
            }
            if kept.exists() {
                artifact.path = kept;
            }
        }
        for dir in [&dirs.work, &dirs.output] {
            remove_dir_if_present(dir)?;
        }
        // Only what survived: an artifact that lived in the working files is gone now.
        record.artifacts.retain(|artifact| artifact.path.exists());
        Ok(())
    }
}

fn remove_dir_if_present(dir: &Utf8Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {dir}")),
    }
}

/// A Packer build, from locating the template to hashing the artifacts.
fn build(ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
    let ProvisionContext {
        inputs,
        dirs,
        host,
        progress,
        cancel,
        placement_host,
        on_failure,
        ..
    } = ctx;
    let template = template::locate(
        required(inputs, "packer_template")?,
        &host.cwd,
        &host.cache_dir,
    )?;
    let packer = runner::find_packer(host.packer.as_deref())?;
    for dir in [&dirs.work, &dirs.output] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    let redactor = Redactor::new(inputs.secret_values());
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&dirs.log)
        .with_context(|| format!("opening log {}", dirs.log))?;
    // Line-buffered, so `tail -f` on the log follows the build as it runs.
    let mut log = LineWriter::new(log_file);
    if let Some(reason) = &template.unread_reason {
        progress.emit(&Event::Phase {
                message: format!("could not read the template's variables ({reason}); passing all of them and letting Packer judge"),
            });
    }

    // Set when the template pins plugins that this Packer cannot install.
    let mut plugins_hint = None;
    if template.requires_plugins && template.format == template::Format::Hcl2 {
        let capabilities = runner::capabilities(&packer, &host.cache_dir)?;
        if !capabilities.has_init {
            plugins_hint = Some(format!(
                "hint: the template pins plugins (`required_plugins`), which needs `packer init` from Packer 1.7 or later; {packer} is Packer {}",
                capabilities.version
            ));
        }
        if capabilities.has_init {
            progress.emit(&Event::Phase {
                message: format!("packer init (Packer {})", capabilities.version),
            });
            let init = runner::Invocation {
                packer: &packer,
                args: vec!["init".to_owned(), template.path.to_string()],
                workdir: &template.workdir,
                tmpdir: &dirs.work,
                cancel_timeout: host.cancel_timeout,
            };
            let outcome = runner::run(&init, &mut log, &redactor, progress, cancel)?;
            check_cancelled(cancel, &dirs.log)?;
            if outcome.exit_code != Some(0) {
                return Err(packer_failed("packer init", &outcome, &dirs.log));
            }
        }
    }
    check_cancelled(cancel, &dirs.log)?;

    let var_file = dirs.work.join("sensitive-vars.json");
    let (args, secrets) = build_args(
        &template,
        inputs,
        &dirs.output,
        placement_host,
        on_failure,
        &var_file,
    );
    if !secrets.is_empty() {
        write_var_file(&var_file, &secrets)?;
    }
    progress.emit(&Event::Phase {
        message: format!("packer build {} (log: {})", template.path, dirs.log),
    });
    let build = runner::Invocation {
        packer: &packer,
        args,
        workdir: &template.workdir,
        tmpdir: &dirs.work,
        cancel_timeout: host.cancel_timeout,
    };
    let outcome = runner::run(&build, &mut log, &redactor, progress, cancel)?;
    check_cancelled(cancel, &dirs.log)?;
    if outcome.report.cancelled {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "packer reports the build was cancelled by someone else (log: {})",
                dirs.log
            ),
        )
        .into());
    }
    if outcome.exit_code != Some(0) {
        let failed = packer_failed("packer build", &outcome, &dirs.log);
        return Err(match plugins_hint {
            Some(hint) => Error::new(ErrorKind::Failed, format!("{failed}\n{hint}")).into(),
            None => failed,
        });
    }

    let artifacts = collect_artifacts(
        &outcome.report.artifact_files,
        &template.workdir,
        &dirs.output,
    )?
    .iter()
    .map(|path| describe_artifact(path))
    .collect::<anyhow::Result<Vec<_>>>()?;
    if !artifacts.iter().any(|artifact| is_ova(&artifact.path)) {
        progress.emit(&Event::Phase {
            message: "the build succeeded but produced no *.ova file".to_owned(),
        });
    }
    Ok(Provisioned { artifacts })
}

fn required<'a>(inputs: &'a Inputs, name: &str) -> anyhow::Result<&'a str> {
    inputs
        .get(name)
        .with_context(|| format!("input `{name}` is missing"))
}

/// Values that name files and VMs: letters, digits, `.`, `_`, `-`, not starting with `-` or `.`.
fn check_name(input: &str, value: &str) -> anyhow::Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with(['-', '.'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(usage(format!(
            "input `{input}` = {value:?} is not a valid name: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `-` or `.`"
        )))
    }
}

/// `packer build` arguments: flags first (Packer wants the template last), one argv entry per
/// value, never through a shell. Sensitive values are not put in argv, where any local user can
/// read them (`/proc/<pid>/cmdline`): they are returned for a private `-var-file` at `var_file`.
fn build_args(
    template: &Template,
    inputs: &Inputs,
    output_dir: &Utf8Path,
    placement_host: &str,
    on_failure: OnFailure,
    var_file: &Utf8Path,
) -> (Vec<String>, BTreeMap<String, String>) {
    let mut args = vec![
        "build".to_owned(),
        "-machine-readable".to_owned(),
        "-color=false".to_owned(),
        // Packer's own reading of the same policy: `abort` leaves its resources for debugging.
        match on_failure {
            OnFailure::Cleanup => "-on-error=cleanup",
            OnFailure::Keep => "-on-error=abort",
        }
        .to_owned(),
    ];
    let mut vars: Vec<(String, String)> = Vec::new();
    let owned = [
        ("vm_name", inputs.get("vm_name").map(str::to_owned)),
        ("output_directory", Some(output_dir.to_string())),
        ("project", inputs.get("project").map(str::to_owned)),
        ("placement_host", Some(placement_host.to_owned())),
    ];
    for (name, value) in owned {
        if let Some(value) = value
            && template.declares(name)
            && template.variables.is_some()
        {
            vars.push((name.to_owned(), value));
        }
    }
    if template.variables.is_none() {
        // The declarations are unknown: pass what we own and let Packer report what it rejects.
        vars.push((
            "vm_name".to_owned(),
            inputs.get("vm_name").unwrap_or_default().to_owned(),
        ));
        vars.push(("output_directory".to_owned(), output_dir.to_string()));
    }
    vars.extend(
        inputs
            .with_prefix(VAR_PREFIX)
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    let mut secrets = BTreeMap::new();
    for (name, value) in vars {
        let input_name = if OWNED_VARIABLES.contains(&name.as_str()) || name == "project" {
            name.clone()
        } else {
            format!("{VAR_PREFIX}{name}")
        };
        if inputs.is_sensitive(&input_name) {
            secrets.insert(name, value);
        } else {
            args.push("-var".to_owned());
            args.push(format!("{name}={value}"));
        }
    }
    if !secrets.is_empty() {
        args.push(format!("-var-file={var_file}"));
    }
    args.push(template.path.to_string());
    (args, secrets)
}

/// Writes variables to a JSON var file only this user can read (Packer reads JSON var files for
/// HCL2 and legacy templates alike). It lives in the run's TMPDIR, removed after the run.
fn write_var_file(path: &Utf8Path, vars: &BTreeMap<String, String>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {path}"))?;
    serde_json::to_writer(&mut file, vars)?;
    file.flush()?;
    Ok(())
}

fn check_cancelled(cancel: &crate::cancel::Cancel, log: &Utf8Path) -> anyhow::Result<()> {
    match cancel.requested() {
        None => Ok(()),
        Some(signal) => Err(crate::cancel::cancelled_error(
            signal,
            &format!("(packer was asked to stop its build; log: {log})"),
        )),
    }
}

fn packer_failed(what: &str, outcome: &runner::Outcome, log: &Utf8Path) -> anyhow::Error {
    let status = match outcome.exit_code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    let mut message = format!("{what} failed ({status})");
    let lines = outcome.report.failure_lines();
    if lines.is_empty() {
        message.push_str(" without saying why");
    } else {
        message.push(':');
        for line in lines {
            for part in line.lines() {
                message.push_str("\n  ");
                message.push_str(part);
            }
        }
    }
    message.push_str(&format!("\nfull log: {log}"));
    Error::new(ErrorKind::Failed, message).into()
}

fn is_ova(path: &Utf8Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("ova"))
}

/// Artifact files Packer reported (relative ones resolved from its working directory) plus any
/// `*.ova` in the output directory; only files that exist (`artifice` lists missing files
/// without failing), each once.
fn collect_artifacts(
    reported: &BTreeSet<Utf8PathBuf>,
    workdir: &Utf8Path,
    output_dir: &Utf8Path,
) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let mut found = BTreeSet::new();
    let mut candidates: Vec<Utf8PathBuf> = reported.iter().map(|path| workdir.join(path)).collect();
    if let Ok(entries) = output_dir.read_dir_utf8() {
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {output_dir}"))?
                .into_path();
            if is_ova(&path) {
                candidates.push(path);
            }
        }
    }
    for candidate in candidates {
        if candidate.is_file()
            && let Ok(real) = candidate.canonicalize_utf8()
        {
            found.insert(real);
        }
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_variables_go_to_the_var_file_not_argv() {
        let schema_inputs = inputs::resolve(
            ID,
            &SCHEMA,
            &inputs::Layer::default(),
            &inputs::Layer(vec![
                ("vm_name".into(), "vm".into(), inputs::Origin::CommandLine),
                (
                    "var.token".into(),
                    "s3cret".into(),
                    inputs::Origin::CommandLine,
                ),
                ("var.size".into(), "1G".into(), inputs::Origin::CommandLine),
            ]),
            &["var.token".to_owned()],
        )
        .unwrap();
        let template = Template {
            path: "/t/t.pkr.hcl".into(),
            workdir: "/t".into(),
            format: template::Format::Hcl2,
            variables: Some(
                ["vm_name", "token", "size"]
                    .into_iter()
                    .map(|name| (name.to_owned(), template::Variable::default()))
                    .collect(),
            ),
            unread_reason: None,
            requires_plugins: false,
        };
        let (args, secrets) = build_args(
            &template,
            &schema_inputs,
            Utf8Path::new("/out"),
            "local",
            OnFailure::Cleanup,
            Utf8Path::new("/work/vars.json"),
        );
        assert_eq!(
            secrets,
            BTreeMap::from([("token".to_owned(), "s3cret".to_owned())])
        );
        assert!(!args.iter().any(|arg| arg.contains("s3cret")), "{args:?}");
        assert!(
            args.contains(&"-var-file=/work/vars.json".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&"size=1G".to_owned()) && args.contains(&"vm_name=vm".to_owned()),
            "{args:?}"
        );
        assert_eq!(args.last().unwrap(), "/t/t.pkr.hcl");
    }

    #[test]
    fn names_are_validated() {
        for good in ["demo", "web-1.2_x", "A"] {
            check_name("vm_name", good).unwrap();
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a/b",
            "x;y",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name("vm_name", bad).is_err(), "{bad}");
        }
    }
}
