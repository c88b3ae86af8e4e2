//! Build mode: a Packer build from a template, its variables bound to inputs, run in its own
//! process group, its artifacts hashed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::LineWriter;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use super::template::{self, Template};
use super::{VAR_PREFIX, is_ova, machine_readable, remove_dir_if_present, required, runner};
use crate::error::{Error, ErrorKind, usage};
use crate::ext::{
    Environment, OnFailure, Prepared, ProvisionContext, Provisioned, describe_artifact,
};
use crate::inputs::Inputs;
use crate::progress::Event;
use crate::redact::Redactor;

/// Checks build-mode inputs and prepares the build: reads the template, binds its variables,
/// finds Packer.
pub(super) fn prepare(inputs: &mut Inputs, env: &Environment) -> anyhow::Result<Box<dyn Prepared>> {
    let template_value = required(inputs, "packer_template")?.to_owned();
    let template = template::locate(&template_value, &env.cwd, &env.cache_dir)?;
    let bindings = bind_variables(&template, inputs, &template_value)?;
    let packer =
        runner::find_packer(env.packer.as_deref()).map_err(|err| usage(format!("{err:#}")))?;
    Ok(Box::new(Build {
        template,
        packer,
        bindings,
        inputs: inputs.clone(),
    }))
}

/// Where the value of a template variable comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// An input: a named one sandboxer owns (`vm_name`, `project`) or a free-form `var.NAME`.
    Input(String),
    /// The sandbox's output directory, which sandboxer owns.
    OutputDirectory,
    /// The placement host the sandbox was placed on.
    PlacementHost,
}

/// Template variables sandboxer sets itself when the template declares them, and from what.
/// A `var.NAME` input for one of these is refused: the owned source decides.
fn owned_source(variable: &str) -> Option<Source> {
    match variable {
        "vm_name" | "project" => Some(Source::Input(variable.to_owned())),
        "output_directory" => Some(Source::OutputDirectory),
        "placement_host" => Some(Source::PlacementHost),
        _ => None,
    }
}

/// One template variable and what feeds it: the single mapping that decides both what is
/// passed to Packer and whether it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    variable: String,
    source: Source,
    /// The template marks the variable sensitive, or the profile marks its input sensitive.
    sensitive: bool,
}

/// Binds template variables to their sources: the owned variables the template declares, then
/// every `var.NAME` input. Marks an input sensitive when the variable it feeds is.
fn bind_variables(
    template: &Template,
    inputs: &mut Inputs,
    template_value: &str,
) -> anyhow::Result<Vec<Binding>> {
    for (name, _) in inputs.with_prefix(VAR_PREFIX) {
        if owned_source(name).is_some() {
            return Err(usage(format!(
                "input `{VAR_PREFIX}{name}` is set by sandboxer itself; use the `{name}` input instead{}",
                if matches!(name, "output_directory" | "placement_host") {
                    " (sandboxer owns it)"
                } else {
                    ""
                }
            )));
        }
    }
    let mut sources: Vec<(String, Source)> = Vec::new();
    match &template.variables {
        Some(declared) => {
            let unknown = inputs
                .with_prefix(VAR_PREFIX)
                .map(|(name, _)| name)
                .find(|name| !declared.contains_key(*name));
            if let Some(name) = unknown {
                let names: Vec<&str> = declared.keys().map(String::as_str).collect();
                let hint = crate::error::did_you_mean(name, names.iter().copied())
                    .map(|near| format!("; did you mean `{VAR_PREFIX}{near}`?"))
                    .unwrap_or_default();
                return Err(usage(format!(
                    "input `{VAR_PREFIX}{name}`: template {template_value} declares no variable `{name}`{hint} (declared: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            for variable in declared.keys() {
                if let Some(source) = owned_source(variable) {
                    sources.push((variable.clone(), source));
                }
            }
        }
        // The declarations are unknown: pass what we must and let Packer report what it rejects.
        None => {
            for variable in ["vm_name", "output_directory"] {
                sources.push((variable.to_owned(), owned_source(variable).expect("owned")));
            }
        }
    }
    let free_form: Vec<String> = inputs
        .with_prefix(VAR_PREFIX)
        .map(|(name, _)| name.to_owned())
        .collect();
    for name in free_form {
        sources.push((name.clone(), Source::Input(format!("{VAR_PREFIX}{name}"))));
    }

    let mut bindings = Vec::new();
    for (variable, source) in sources {
        if let Source::Input(input) = &source
            && inputs.get(input).is_none()
        {
            continue; // an owned input nobody gave (`project` for a template that takes one)
        }
        let declared_sensitive = template
            .variables
            .as_ref()
            .and_then(|vars| vars.get(&variable))
            .is_some_and(|var| var.sensitive);
        let sensitive = match &source {
            Source::Input(input) => {
                if declared_sensitive {
                    inputs.mark_sensitive(input);
                }
                inputs.is_sensitive(input)
            }
            Source::OutputDirectory | Source::PlacementHost => declared_sensitive,
        };
        bindings.push(Binding {
            variable,
            source,
            sensitive,
        });
    }
    Ok(bindings)
}

/// A checked build: the template read once, Packer found once, every variable bound.
#[derive(Debug)]
struct Build {
    template: Template,
    packer: Utf8PathBuf,
    bindings: Vec<Binding>,
    inputs: Inputs,
}

impl Prepared for Build {
    fn provision(self: Box<Self>, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
        let on_failure = ctx.on_failure;
        let dirs = ctx.dirs;
        let built = self.run(ctx);
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
}

impl Build {
    /// The Packer build, from `packer init` (when needed) to hashing the artifacts.
    fn run(&self, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
        let ProvisionContext {
            dirs,
            env,
            progress,
            cancel,
            placement_host,
            on_failure,
            ..
        } = ctx;
        let Build {
            template, packer, ..
        } = self;
        for dir in [&dirs.work, &dirs.output] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        }
        let secrets = self.bindings.iter().filter(|binding| binding.sensitive);
        let redactor = Redactor::new(
            self.inputs
                .secret_values()
                .into_iter()
                .chain(secrets.filter_map(|binding| {
                    self.value(binding, &dirs.output, placement_host)
                        .map(str::to_owned)
                })),
            &[machine_readable::encode],
        );
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
            let capabilities = runner::capabilities(packer, &env.cache_dir)?;
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
                    packer,
                    args: vec!["init".to_owned(), template.path.to_string()],
                    workdir: &template.workdir,
                    tmpdir: &dirs.work,
                    cancel_timeout: env.cancel_timeout,
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
        let (args, secrets) = self.build_args(&dirs.output, placement_host, on_failure, &var_file);
        if !secrets.is_empty() {
            write_var_file(&var_file, &secrets)?;
        }
        progress.emit(&Event::Phase {
            message: format!("packer build {} (log: {})", template.path, dirs.log),
        });
        let build = runner::Invocation {
            packer,
            args,
            workdir: &template.workdir,
            tmpdir: &dirs.work,
            cancel_timeout: env.cancel_timeout,
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

    /// The value a binding passes; `None` for an input that has none.
    fn value<'a>(
        &'a self,
        binding: &Binding,
        output_dir: &'a Utf8Path,
        placement_host: &'a str,
    ) -> Option<&'a str> {
        match &binding.source {
            Source::Input(input) => self.inputs.get(input),
            Source::OutputDirectory => Some(output_dir.as_str()),
            Source::PlacementHost => Some(placement_host),
        }
    }

    /// `packer build` arguments: flags first (Packer wants the template last), one argv entry
    /// per value, never through a shell. Sensitive values are not put in argv, where any local
    /// user can read them (`/proc/<pid>/cmdline`): they are returned for a private `-var-file`
    /// at `var_file`.
    fn build_args(
        &self,
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
        let mut secrets = BTreeMap::new();
        for binding in &self.bindings {
            let Some(value) = self.value(binding, output_dir, placement_host) else {
                continue;
            };
            if binding.sensitive {
                secrets.insert(binding.variable.clone(), value.to_owned());
            } else {
                args.push("-var".to_owned());
                args.push(format!("{}={value}", binding.variable));
            }
        }
        if !secrets.is_empty() {
            args.push(format!("-var-file={var_file}"));
        }
        args.push(self.template.path.to_string());
        (args, secrets)
    }
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
    use super::super::{ID, SCHEMA, check_name};
    use super::*;
    use crate::inputs::{self, Layer, Origin};

    fn template(variables: &[(&str, bool)]) -> Template {
        Template {
            path: "/t/t.pkr.hcl".into(),
            workdir: "/t".into(),
            format: template::Format::Hcl2,
            variables: Some(
                variables
                    .iter()
                    .map(|(name, sensitive)| {
                        (
                            (*name).to_owned(),
                            template::Variable {
                                sensitive: *sensitive,
                            },
                        )
                    })
                    .collect(),
            ),
            unread_reason: None,
            requires_plugins: false,
        }
    }

    /// Resolves inputs as `create` does (profile layer, then `--input`) and binds them.
    fn prepared(
        template: Template,
        profile: &[(&str, &str)],
        command_line: &[(&str, &str)],
        sensitive: &[&str],
    ) -> (Build, Vec<String>, BTreeMap<String, String>) {
        let layer = |pairs: &[(&str, &str)], origin: Origin| {
            Layer(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string(), origin.clone()))
                    .collect(),
            )
        };
        let mut inputs = inputs::resolve(
            ID,
            &SCHEMA,
            &layer(profile, Origin::Profile("p.toml:1:1".into())),
            &layer(command_line, Origin::CommandLine),
            &sensitive.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let bindings = bind_variables(&template, &mut inputs, "t.pkr.hcl").unwrap();
        let build = Build {
            template,
            packer: "/usr/bin/packer".into(),
            bindings,
            inputs,
        };
        let (args, secrets) = build.build_args(
            Utf8Path::new("/out"),
            "local",
            OnFailure::Cleanup,
            Utf8Path::new("/work/vars.json"),
        );
        (build, args, secrets)
    }

    #[test]
    fn sensitive_variables_go_to_the_var_file_not_argv() {
        let (_, args, secrets) = prepared(
            template(&[("vm_name", false), ("token", false), ("size", false)]),
            &[("packer_template", "t.pkr.hcl")],
            &[
                ("vm_name", "vm"),
                ("var.token", "s3cret"),
                ("var.size", "1G"),
            ],
            &["var.token"],
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

    /// Issue 6, defect 1: a template variable marked sensitive that sandboxer feeds from an
    /// owned input (`project`) was passed in argv and recorded in clear.
    #[test]
    fn a_sensitive_owned_variable_is_secret_everywhere() {
        let (build, args, secrets) = prepared(
            template(&[
                ("vm_name", false),
                ("project", true),
                ("output_directory", false),
            ]),
            &[
                ("packer_template", "t.pkr.hcl"),
                ("vm_name", "haskell-build-{project}"),
            ],
            &[("project", "hushhush")],
            &[],
        );
        assert!(!args.iter().any(|arg| arg.contains("hushhush")), "{args:?}");
        assert_eq!(secrets["project"], "hushhush");
        // vm_name is made from the secret, so it is one too.
        assert_eq!(secrets["vm_name"], "haskell-build-hushhush");
        assert!(
            args.contains(&"output_directory=/out".to_owned()),
            "{args:?}"
        );
        let recorded = build.inputs.redacted();
        assert_eq!(recorded["project"], inputs::REDACTED);
        assert_eq!(recorded["vm_name"], inputs::REDACTED);
        assert!(
            build
                .inputs
                .secret_values()
                .contains(&"hushhush".to_owned())
        );
    }

    #[test]
    fn a_var_input_for_an_owned_variable_is_refused() {
        for owned in ["vm_name", "project", "output_directory", "placement_host"] {
            let mut inputs = inputs::resolve(
                ID,
                &SCHEMA,
                &Layer::default(),
                &Layer(vec![
                    ("packer_template".into(), "t".into(), Origin::CommandLine),
                    ("vm_name".into(), "vm".into(), Origin::CommandLine),
                    (format!("var.{owned}"), "x".into(), Origin::CommandLine),
                ]),
                &[],
            )
            .unwrap();
            let err = bind_variables(&template(&[(owned, false)]), &mut inputs, "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains("is set by sandboxer itself"), "{owned}: {err}");
        }
    }

    #[test]
    fn names_are_validated() {
        for good in ["demo", "web-1.2_x", "A"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a/b",
            "x;y",
            "$(id)",
            "`id`",
            "a\nb",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
