//! Build mode: a Packer build from a template, its variables bound to inputs and var files,
//! its builds selected, run in its own process group, its artifacts hashed and attributed.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use super::selection::{self, Selection};
use super::template::{self, Template};
use super::var_files::{self, VarFile};
use super::{VAR_PREFIX, is_ova, machine_readable, remove_dir_if_present, required, runner};
use crate::error::{Error, ErrorKind, usage};
use crate::ext::{
    Environment, OnFailure, Prepared, ProvisionContext, Provisioned, describe_artifact,
};
use crate::inputs::{Inputs, REDACTED, Value};
use crate::provenance::{self, BuildProvenance, FileDigest, TemplateDigest, Tool};
use crate::record::Artifact;
use crate::redact::Redactor;
use crate::registry::SandboxDirs;
use crate::remote::HostSession;

/// Checks build-mode inputs and prepares the build: reads the template and every var file,
/// binds the variables, checks the build selection, finds Packer.
pub(super) fn prepare(inputs: &mut Inputs, env: &Environment) -> anyhow::Result<Box<dyn Prepared>> {
    let template_value = required(inputs, "packer_template")?.to_owned();
    let template = template::locate(&template_value, &env.cwd, &env.cache_dir)?;
    let var_files = read_var_files(&template, inputs, env)?;
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    check_var_files(
        &template,
        &template_value,
        &var_files,
        inputs.get("strict_vars") == Some("true"),
        &mut warnings,
    )?;
    let bindings = bind_variables(&template, inputs, &template_value, &var_files)?;
    notes.extend(overridden_values(&bindings, &var_files));
    let selection = selection::select(&template, &template_value, inputs, &mut notes)?;
    // Needed only if the build may run here (see `check_here`): a build host has its own.
    let packer = runner::find_packer(env.packer.as_deref()).map_err(|err| format!("{err:#}"));
    // Packer's version goes into every build's provenance: asked once per installed Packer and
    // cached, never a Packer start per build. A Packer that will not say does not stop a build.
    // (A build placed on a build host records that host's Packer instead.)
    let version = match packer
        .as_ref()
        .map(|packer| runner::capabilities(packer, &env.cache_dir))
    {
        Ok(Ok(capabilities)) => Some(capabilities.version),
        Ok(Err(err)) => {
            notes.push(format!("Packer's version is unknown: {err:#}"));
            None
        }
        Err(_) => None,
    };
    let mut build = Build {
        template,
        packer,
        bindings,
        var_files,
        selection,
        warnings,
        notes,
        inputs: inputs.clone(),
        provenance: BuildProvenance::default(),
    };
    build.provenance = build.static_provenance(&template_value, inputs, version);
    Ok(Box::new(build))
}

/// A var file in the order Packer reads it, and whether sandboxer passes it.
#[derive(Debug, Clone)]
struct LoadedVarFile {
    file: VarFile,
    /// The template's own `*.auto.pkrvars.*`, which Packer loads by itself; otherwise one of
    /// `var_files`, passed as `-var-file=`.
    auto: bool,
}

/// Reads the template's auto var files, then each of `var_files` (resolved as
/// `packer_template` is), in the order Packer reads them.
fn read_var_files(
    template: &Template,
    inputs: &Inputs,
    env: &Environment,
) -> anyhow::Result<Vec<LoadedVarFile>> {
    let mut loaded = Vec::new();
    for path in &template.auto_var_files {
        let shown = path
            .strip_prefix(&env.cwd)
            .map_or_else(|_| path.to_string(), ToString::to_string);
        loaded.push(LoadedVarFile {
            file: var_files::read(path, &shown)?,
            auto: true,
        });
    }
    for (value, origin) in inputs.list("var_files") {
        let at = origin.describe();
        let path = template::resolve_path(value, &env.cwd, &env.cache_dir)?;
        let meta = std::fs::metadata(&path).map_err(|err| {
            usage(format!(
                "{at}: var file {value:?}: {}",
                template::unreadable(value, &path, &err)
            ))
        })?;
        if !meta.is_file() {
            return Err(usage(format!(
                "{at}: var file {value:?}: {path} is not a file"
            )));
        }
        if var_files::Syntax::of(&path).is_none() {
            return Err(usage(format!(
                "{at}: var file {value:?}: {}",
                var_files::UNKNOWN_SYNTAX
            )));
        }
        let path = path
            .canonicalize_utf8()
            .with_context(|| format!("resolving {path}"))?;
        if template.format == template::Format::LegacyJson
            && var_files::Syntax::of(&path) != Some(var_files::Syntax::Json)
        {
            return Err(usage(format!(
                "{at}: var file {value:?}: a legacy JSON template takes JSON var files only (*.json)"
            )));
        }
        loaded.push(LoadedVarFile {
            file: var_files::read(&path, value)?,
            auto: false,
        });
    }
    Ok(loaded)
}

/// Checks what the var files set, as Packer would and a little more: a variable the template
/// does not declare is a warning naming the file and line (an error under `strict_vars`);
/// a variable sandboxer sets itself may not come from `var_files`.
fn check_var_files(
    template: &Template,
    template_value: &str,
    var_files: &[LoadedVarFile],
    strict: bool,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    for LoadedVarFile { file, auto } in var_files {
        for assignment in &file.assignments {
            let auto = *auto;
            let variable = assignment.variable.as_str();
            let location = &assignment.location;
            if owned_source(variable).is_some() && !auto {
                return Err(usage(format!("{location}: {}", owned_refusal(variable))));
            }
            let Some(declared) = &template.variables else {
                continue;
            };
            if declared.contains_key(variable) {
                continue;
            }
            let hint = crate::error::did_you_mean(variable, declared.keys().map(String::as_str))
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            let problem = format!(
                "{location}: undefined variable `{variable}`: set here, but template {template_value} declares no such variable{hint}"
            );
            if strict {
                return Err(usage(format!("{problem} (strict_vars = true)")));
            }
            warnings.push(format!(
                "{problem} (Packer ignores it; `strict_vars = true` makes this an error)"
            ));
        }
    }
    Ok(())
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
    /// The last var file (in Packer's order) that sets it, when no input does: Packer reads it
    /// there itself. Indexes into the build's var files and that file's assignments.
    VarFile { file: usize, assignment: usize },
}

/// Template variables sandboxer sets itself when the template declares them, and from what.
/// A `var.NAME` input or a `var_files` entry for one of these is refused: the owned source
/// decides (a template's own auto var file may set one; sandboxer's `-var` beats it, as it
/// beats the declaration's default).
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

/// Why a value for a variable sandboxer owns is refused.
fn owned_refusal(variable: &str) -> String {
    if matches!(variable, "output_directory" | "placement_host") {
        format!("`{variable}` is set by sandboxer itself (sandboxer owns it)")
    } else {
        format!("`{variable}` is set by sandboxer itself; use the `{variable}` input instead")
    }
}

/// Binds template variables to their sources, in Packer's order of precedence: the owned
/// variables the template declares and every `var.NAME` input (passed as `-var`, which beats
/// var files), then what the var files set that no input does (the last file wins). Marks an
/// input sensitive when the variable it feeds is.
fn bind_variables(
    template: &Template,
    inputs: &mut Inputs,
    template_value: &str,
    var_files: &[LoadedVarFile],
) -> anyhow::Result<Vec<Binding>> {
    for (name, _) in inputs.with_prefix(VAR_PREFIX) {
        if owned_source(name).is_some() {
            return Err(usage(format!(
                "input `{VAR_PREFIX}{name}`: {}",
                owned_refusal(name)
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
                let names = declared.keys().map(String::as_str);
                let hint = crate::error::did_you_mean(name, names.clone())
                    .map(|near| format!("; did you mean `{VAR_PREFIX}{near}`?"))
                    .unwrap_or_default();
                let listed = crate::error::some_candidates(
                    name,
                    "declared",
                    names,
                    &format!("`packer inspect {}`", template.path),
                );
                return Err(usage(format!(
                    "input `{VAR_PREFIX}{name}`: template {template_value} declares no variable `{name}`{hint} ({listed})"
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
            Source::OutputDirectory | Source::PlacementHost | Source::VarFile { .. } => {
                declared_sensitive
            }
        };
        bindings.push(Binding {
            variable,
            source,
            sensitive,
        });
    }

    for (file_index, loaded) in var_files.iter().enumerate() {
        for (assignment_index, assignment) in loaded.file.assignments.iter().enumerate() {
            let source = Source::VarFile {
                file: file_index,
                assignment: assignment_index,
            };
            let variable = &assignment.variable;
            match bindings
                .iter_mut()
                .find(|binding| &binding.variable == variable)
            {
                // An input or sandboxer itself decides: `-var` beats every var file.
                Some(binding) if !matches!(binding.source, Source::VarFile { .. }) => {}
                Some(binding) => binding.source = source,
                None => {
                    let declared_sensitive = template
                        .variables
                        .as_ref()
                        .and_then(|vars| vars.get(variable))
                        .is_some_and(|var| var.sensitive);
                    // The profile may mark `var.NAME` sensitive for a variable a var file sets.
                    let sensitive = declared_sensitive
                        || inputs.is_sensitive(&format!("{VAR_PREFIX}{variable}"));
                    bindings.push(Binding {
                        variable: variable.clone(),
                        source,
                        sensitive,
                    });
                }
            }
        }
    }
    Ok(bindings)
}

/// Notes on the var-file values that Packer will not use because `-var` beats them.
fn overridden_values(bindings: &[Binding], var_files: &[LoadedVarFile]) -> Vec<String> {
    let mut notes = Vec::new();
    for loaded in var_files {
        for assignment in &loaded.file.assignments {
            let winner = bindings
                .iter()
                .find(|binding| binding.variable == assignment.variable)
                .map(|binding| &binding.source);
            let by = match winner {
                Some(Source::Input(input)) => format!("input `{input}`"),
                Some(Source::OutputDirectory | Source::PlacementHost) => "sandboxer".to_owned(),
                Some(Source::VarFile { .. }) | None => continue,
            };
            notes.push(format!(
                "{}: `{}` is overridden by {by} (-var beats var files)",
                assignment.location, assignment.variable
            ));
        }
    }
    notes
}

/// A checked build: the template and var files read once, Packer found once, every variable
/// bound, the builds to run checked.
#[derive(Debug)]
struct Build {
    template: Template,
    /// Packer on this machine, or why there is none.
    packer: Result<Utf8PathBuf, String>,
    bindings: Vec<Binding>,
    /// In Packer's order: the template's own auto var files, then `var_files`.
    var_files: Vec<LoadedVarFile>,
    selection: Selection,
    /// Shown whatever the verbosity, and written to the log.
    warnings: Vec<String>,
    /// Shown at `-v`: checks passed over and decisions made.
    notes: Vec<String>,
    inputs: Inputs,
    /// What the build is made from, all but the values only the allocated sandbox knows.
    provenance: BuildProvenance,
}

impl Prepared for Build {
    fn provenance(&self, dirs: &SandboxDirs, placement_host: &str) -> Option<BuildProvenance> {
        let mut provenance = self.provenance.clone();
        for binding in &self.bindings {
            if !matches!(
                binding.source,
                Source::OutputDirectory | Source::PlacementHost
            ) {
                continue;
            }
            let value = match (
                binding.sensitive,
                self.value(binding, &dirs.output, placement_host),
            ) {
                (true, _) => REDACTED.to_owned(),
                (false, Some(value)) => value.to_owned(),
                (false, None) => continue,
            };
            provenance.variables.insert(binding.variable.clone(), value);
        }
        Some(provenance)
    }

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

    fn runs_on_build_hosts(&self) -> bool {
        true
    }

    fn check_here(&self) -> anyhow::Result<()> {
        self.packer
            .as_ref()
            .map(drop)
            .map_err(|err| usage(err.clone()))
    }
}

/// Where the build's files are as Packer sees them: here, or in the build's directory on the
/// build host (`<workdir>/<sandbox-id>/`: `template/`, `var-files/`, `output/`, `secrets/`,
/// `tmp/`), where they are copied to.
#[derive(Debug, Clone)]
struct Layout {
    /// The file or directory handed to `packer build`.
    template: Utf8PathBuf,
    /// Where Packer runs: the template's directory.
    workdir: Utf8PathBuf,
    /// The listed var files (not the template's own), in order.
    var_files: Vec<Utf8PathBuf>,
    output: Utf8PathBuf,
    /// The private var file with the sensitive values.
    secrets: Utf8PathBuf,
    tmpdir: Utf8PathBuf,
}

impl Layout {
    /// `tmpdir` is `work`, or a short stand-in when `work` is too long for Packer's sockets.
    fn local(
        template: &Template,
        var_files: &[LoadedVarFile],
        dirs: &SandboxDirs,
        tmpdir: Utf8PathBuf,
    ) -> Layout {
        Layout {
            template: template.path.clone(),
            workdir: template.workdir.clone(),
            var_files: listed(var_files).map(|file| file.path.clone()).collect(),
            output: dirs.output.clone(),
            secrets: dirs.work.join("sensitive-vars.json"),
            tmpdir,
        }
    }

    fn remote(template: &Template, var_files: &[LoadedVarFile], dir: &Utf8Path) -> Layout {
        let workdir = dir.join("template");
        let template_path = match template.path.strip_prefix(&template.workdir) {
            Ok(relative) if !relative.as_str().is_empty() => workdir.join(relative),
            _ => workdir.clone(),
        };
        Layout {
            template: template_path,
            workdir,
            var_files: listed(var_files)
                .enumerate()
                .map(|(at, file)| dir.join("var-files").join(shipped_name(at, &file.path)))
                .collect(),
            output: dir.join("output"),
            secrets: dir.join("secrets").join("sensitive-vars.json"),
            tmpdir: dir.join("tmp"),
        }
    }
}

/// The var files sandboxer passes itself, in order (the template's own Packer loads).
fn listed(var_files: &[LoadedVarFile]) -> impl Iterator<Item = &VarFile> {
    var_files
        .iter()
        .filter(|loaded| !loaded.auto)
        .map(|loaded| &loaded.file)
}

/// A listed var file's name on the build host: numbered, so two files of the same name from
/// different directories stay two.
fn shipped_name(at: usize, path: &Utf8Path) -> String {
    format!("{at}-{}", path.file_name().unwrap_or("vars"))
}

impl Build {
    /// The Packer build, from `packer init` (when needed) to hashing the artifacts; on a build
    /// host, with the template and var files copied there first and the artifacts copied back.
    fn run(&self, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
        let ProvisionContext {
            dirs,
            env,
            progress,
            cancel,
            placement_host,
            on_failure,
            mut build_host,
            ..
        } = ctx;
        let template = &self.template;
        // On a build host the host's Packer runs; here, this machine's must be there.
        let packer = match (&self.packer, build_host.is_some()) {
            (Ok(packer), _) => packer.clone(),
            (Err(_), true) => Utf8PathBuf::new(),
            (Err(err), false) => return Err(usage(err.clone())),
        };
        let packer = &packer;
        for dir in [&dirs.work, &dirs.output] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        }
        // Held until the run ends: a short stand-in for `work` as Packer's TMPDIR here, when
        // `work` is too long for Packer's plugin sockets.
        let short_tmpdir = match build_host {
            None => short_tmpdir_for(&dirs.work)?,
            Some(_) => None,
        };
        let layout = match build_host.as_deref() {
            None => {
                let tmpdir = match &short_tmpdir {
                    Some(short) => Utf8Path::from_path(short.path())
                        .context("the temporary directory is not UTF-8")?
                        .to_owned(),
                    None => dirs.work.clone(),
                };
                Layout::local(template, &self.var_files, dirs, tmpdir)
            }
            Some(session) => Layout::remote(
                template,
                &self.var_files,
                session
                    .dir()
                    .context("the build host's directory was not made")?,
            ),
        };
        let redactor = Redactor::new(
            self.secrets(&layout.output, placement_host),
            &[machine_readable::encode],
        );
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&dirs.log)
            .with_context(|| format!("opening log {}", dirs.log))?;
        // Buffered, and flushed whenever Packer's output runs dry (see `runner::run`): `tail -f`
        // follows the build as it runs, and a flood of output costs one write per 64 KiB, not
        // one per line.
        let mut log = BufWriter::with_capacity(64 * 1024, log_file);
        if let Some(reason) = &template.unread_reason {
            progress.note(format!("could not read the template's variables ({reason}); passing all of them and letting Packer judge"));
        }
        for warning in &self.warnings {
            // In the log too: `-q` hides progress, and the log is the build's own account.
            let warning = redactor.redact(warning);
            writeln!(log, "# sandboxer: warning: {warning}")?;
            progress.note(format!("warning: {warning}"));
        }
        if env.verbose {
            for note in &self.notes {
                progress.note(redactor.redact(note).into_owned());
            }
        }

        let (args, secrets) = self.build_args(&layout, placement_host, on_failure);
        if let Some(session) = build_host.as_deref_mut() {
            let staged = self.stage(&layout, &dirs.work, &secrets)?;
            progress.note(format!(
                "copying {} to build host `{}` ({})",
                template.workdir,
                session.host().name,
                session.dir().unwrap_or(&layout.workdir)
            ));
            session.ship(&staged, cancel)?;
            remove_dir_if_present(&staged)?;
        } else if !secrets.is_empty() {
            write_var_file(&layout.secrets, &secrets)?;
        }

        // Set when the template pins plugins that this Packer cannot install.
        let mut plugins_hint = None;
        if template.requires_plugins && template.format == template::Format::Hcl2 {
            if let Some(session) = build_host.as_deref() {
                progress.note(format!(
                        "the template pins plugins (`required_plugins`); sandboxer runs no `packer init` on build hosts, so they must be installed on `{}` already",
                        session.host().name
                    ));
            } else {
                let capabilities = runner::capabilities(packer, &env.cache_dir)?;
                if !capabilities.has_init {
                    plugins_hint = Some(format!(
                        "hint: the template pins plugins (`required_plugins`), which needs `packer init` from Packer 1.7 or later; {packer} is Packer {}",
                        capabilities.version
                    ));
                }
                if capabilities.has_init {
                    progress.note(format!("packer init (Packer {})", capabilities.version));
                    let init = runner::Invocation {
                        packer,
                        args: vec!["init".to_owned(), template.path.to_string()],
                        workdir: &template.workdir,
                        tmpdir: &layout.tmpdir,
                        cancel_timeout: env.cancel_timeout,
                        heartbeat: env.heartbeat,
                    };
                    let outcome = runner::run(
                        &init,
                        runner::Host::Local,
                        &mut log,
                        &redactor,
                        progress,
                        cancel,
                    )?;
                    check_cancelled(cancel, &dirs.log)?;
                    if outcome.exit_code != Some(0) {
                        return Err(packer_failed("packer init", &outcome, &dirs.log));
                    }
                }
            }
        }
        check_cancelled(cancel, &dirs.log)?;

        let (shown_packer, host) = match build_host.as_deref_mut() {
            None => (packer.clone(), runner::Host::Local),
            Some(session) => {
                progress.note(format!(
                    "packer build {} on build host `{}` (log: {})",
                    layout.template,
                    session.host().name,
                    dirs.log
                ));
                (
                    Utf8PathBuf::from(session.host().ssh.packer.clone()),
                    runner::Host::Remote(session),
                )
            }
        };
        if matches!(host, runner::Host::Local) {
            progress.note(format!(
                "packer build {} (log: {})",
                template.path, dirs.log
            ));
        }
        let build = runner::Invocation {
            packer: &shown_packer,
            args,
            workdir: &layout.workdir,
            tmpdir: &layout.tmpdir,
            cancel_timeout: env.cancel_timeout,
            heartbeat: env.heartbeat,
        };
        let ran = runner::run(&build, host, &mut log, &redactor, progress, cancel);
        if let Some(session) = build_host.as_deref_mut() {
            // The secrets go as soon as Packer is done with them, whatever happened.
            let scrubbed = session.scrub();
            if ran.is_ok() && cancel.requested().is_none() {
                scrubbed?;
            }
        }
        let outcome = ran?;
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

        let artifacts = match build_host {
            None => collect_artifacts(
                &outcome.report.artifact_files,
                &template.workdir,
                &dirs.output,
            )?
            .into_iter()
            .map(|(path, build)| {
                let mut artifact = describe_artifact(&path)?;
                artifact.build = build;
                Ok(artifact)
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
            Some(session) => fetch_artifacts(
                session,
                &outcome.report.artifact_files,
                &layout,
                &dirs.output,
                progress,
                cancel,
            )?,
        };
        let builds = outcome.report.builds.clone();
        if builds.is_empty() && !self.selection.is_empty() {
            progress.note(format!(
                "warning: packer ran no build: {} left none of the template's builds",
                self.selection.args().join(" ")
            ));
        }
        if !artifacts.iter().any(|artifact| is_ova(&artifact.path)) {
            progress.note("the build succeeded but produced no *.ova file".to_owned());
        }
        Ok(Provisioned::new(artifacts).with_builds(builds))
    }

    /// The provenance known before the sandbox exists: the template's digest (a directory's
    /// over its template files and its own auto var files), the var files', Packer's version,
    /// the `-var` values from inputs (secrets redacted), and the file inputs made absolute.
    /// A var file that sets a secret is listed with `<redacted>` for its hash: a hash of a
    /// short secret in a predictable file gives the secret away.
    fn static_provenance(
        &self,
        template_value: &str,
        inputs: &Inputs,
        version: Option<String>,
    ) -> BuildProvenance {
        let sets_secret = |file: &VarFile| {
            file.assignments.iter().any(|assignment| {
                self.bindings
                    .iter()
                    .any(|binding| binding.sensitive && binding.variable == assignment.variable)
            })
        };
        let digest_of = |file: &VarFile| {
            if sets_secret(file) {
                REDACTED.to_owned()
            } else {
                file.sha256.clone()
            }
        };
        let template = &self.template;
        let mut files = template.digests.clone();
        for loaded in self.var_files.iter().filter(|loaded| loaded.auto) {
            files.push(FileDigest {
                path: loaded
                    .file
                    .path
                    .strip_prefix(&template.workdir)
                    .map_or_else(|_| loaded.file.path.clone(), Utf8Path::to_owned),
                sha256: digest_of(&loaded.file),
            });
        }
        files.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        let is_directory = template.path == template.workdir;
        let sha256 = match files.as_slice() {
            [one] if !is_directory => one.sha256.clone(),
            _ => provenance::directory_digest(&files),
        };
        let mut variables = BTreeMap::new();
        for binding in &self.bindings {
            let Source::Input(input) = &binding.source else {
                continue;
            };
            let Some(value) = inputs.get(input) else {
                continue;
            };
            let shown = if binding.sensitive || inputs.is_sensitive(input) {
                REDACTED.to_owned()
            } else {
                value.to_owned()
            };
            variables.insert(binding.variable.clone(), shown);
        }
        let mut input_paths = BTreeMap::new();
        if !template_value.starts_with(crate::builtin::SCHEME) {
            input_paths.insert(
                "packer_template".to_owned(),
                Value::Single(template.path.to_string()),
            );
        }
        let listed: Vec<String> = self
            .var_files
            .iter()
            .filter(|loaded| !loaded.auto)
            .zip(inputs.list("var_files"))
            .map(|(loaded, (value, _))| {
                if value.starts_with(crate::builtin::SCHEME) {
                    value.clone()
                } else {
                    loaded.file.path.to_string()
                }
            })
            .collect();
        if !listed.is_empty() {
            input_paths.insert("var_files".to_owned(), Value::List(listed));
        }
        BuildProvenance {
            template: Some(TemplateDigest {
                path: template.path.clone(),
                sha256,
                files,
            }),
            var_files: self
                .var_files
                .iter()
                .filter(|loaded| !loaded.auto)
                .map(|loaded| FileDigest {
                    path: loaded.file.path.clone(),
                    sha256: digest_of(&loaded.file),
                })
                .collect(),
            // Packer here; a build placed on a build host records that host's instead.
            tool: Some(Tool {
                name: "packer".to_owned(),
                path: self.packer.clone().unwrap_or_else(|_| "packer".into()),
                version,
            }),
            variables,
            input_paths,
        }
    }

    /// What goes to the build host, staged under `work` as links to the originals (rsync
    /// follows them): the template's directory, the listed var files, and the private var file
    /// (mode 0600 here and there), laid out as `layout` names them.
    fn stage(
        &self,
        layout: &Layout,
        work: &Utf8Path,
        secrets: &BTreeMap<String, String>,
    ) -> anyhow::Result<Utf8PathBuf> {
        use std::os::unix::fs::{DirBuilderExt as _, symlink};
        let staged = work.join("to-build-host");
        remove_dir_if_present(&staged)?;
        let mkdir = |dir: &Utf8Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {dir}"))
        };
        mkdir(&staged)?;
        symlink(&self.template.workdir, staged.join("template"))
            .with_context(|| format!("staging {}", self.template.workdir))?;
        let files: Vec<&VarFile> = listed(&self.var_files).collect();
        if !files.is_empty() {
            mkdir(&staged.join("var-files"))?;
        }
        for (at, file) in files.into_iter().enumerate() {
            let link = staged.join("var-files").join(shipped_name(at, &file.path));
            symlink(&file.path, &link).with_context(|| format!("staging {}", file.path))?;
        }
        mkdir(&staged.join("secrets"))?;
        if !secrets.is_empty() {
            let name = layout.secrets.file_name().unwrap_or("sensitive-vars.json");
            write_var_file(&staged.join("secrets").join(name), secrets)?;
        }
        Ok(staged)
    }

    /// Every value that must never be written down: sensitive inputs, and every value (the
    /// winning one and any a later source overrides) of a variable whose binding is sensitive.
    fn secrets(&self, output_dir: &Utf8Path, placement_host: &str) -> Vec<String> {
        let mut secrets = self.inputs.secret_values();
        for binding in self.bindings.iter().filter(|binding| binding.sensitive) {
            if let Some(value) = self.value(binding, output_dir, placement_host) {
                secrets.push(value.to_owned());
            }
            for loaded in &self.var_files {
                for assignment in &loaded.file.assignments {
                    if assignment.variable == binding.variable {
                        secrets.extend(assignment.leaves.iter().cloned());
                    }
                }
            }
        }
        secrets
    }

    /// The value a binding passes as `-var`; `None` for an input that has none, and for a var
    /// file's value, which Packer reads from the file.
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
            Source::VarFile { .. } => None,
        }
    }

    /// `packer build` arguments: flags first (Packer wants the template last), one argv entry
    /// per value, never through a shell. Sensitive values are not put in argv, where any local
    /// user can read them (`/proc/<pid>/cmdline`): they are returned for a private `-var-file`
    /// at `var_file`.
    fn build_args(
        &self,
        layout: &Layout,
        placement_host: &str,
        on_failure: OnFailure,
    ) -> (Vec<String>, BTreeMap<String, String>) {
        let output_dir = &layout.output;
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
        args.extend(self.selection.args());
        // In the order given, after the template's own auto var files (which Packer loads
        // itself), so a later file wins, as with `packer build -var-file=... -var-file=...`.
        for path in &layout.var_files {
            args.push(format!("-var-file={path}"));
        }
        let mut secrets = BTreeMap::new();
        let mut vars = Vec::new();
        for binding in &self.bindings {
            let Some(value) = self.value(binding, output_dir, placement_host) else {
                continue;
            };
            if binding.sensitive {
                secrets.insert(binding.variable.clone(), value.to_owned());
            } else {
                vars.push("-var".to_owned());
                vars.push(format!("{}={value}", binding.variable));
            }
        }
        // Last of the var files: these are inputs, and inputs beat var files.
        if !secrets.is_empty() {
            args.push(format!("-var-file={}", layout.secrets));
        }
        args.extend(vars);
        args.push(layout.template.to_string());
        (args, secrets)
    }
}

/// The longest `TMPDIR` Packer can use: its plugins listen on Unix sockets named
/// `$TMPDIR/packer-plugin<10 digits>`, and a socket path may not exceed 107 bytes (Packer
/// crashes with "bind: invalid argument" past that).
const MAX_PACKER_TMPDIR: usize = 107 - "/packer-plugin".len() - 10;

/// A short private directory to stand in for `work` as Packer's `TMPDIR` when `work` (below a
/// deep state dir) is too long for Packer's sockets; removed when dropped, as `work` is.
fn short_tmpdir_for(work: &Utf8Path) -> anyhow::Result<Option<tempfile::TempDir>> {
    if work.as_str().len() <= MAX_PACKER_TMPDIR {
        return Ok(None);
    }
    let mut parent = std::env::temp_dir();
    if parent.as_os_str().len() > MAX_PACKER_TMPDIR - 20 {
        parent = "/tmp".into();
    }
    tempfile::Builder::new()
        .prefix("sandboxer-")
        .tempdir_in(&parent)
        .map(Some)
        .with_context(|| format!("creating a short TMPDIR for packer in {}", parent.display()))
}

/// Writes variables to a JSON var file only this user can read (Packer reads JSON var files for
/// HCL2 and legacy templates alike). It lives in the sandbox's `work/` (on a build host, the
/// build directory's `secrets/`), removed after the run.
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

/// The artifacts of a build on a build host: hashed there (the files Packer reported, resolved
/// from its directory there, and every `*.ova` in the output directory there), copied into
/// `output` here (each by its file name), and hashed again here. A file that arrives different
/// from what was hashed on the host fails the build.
fn fetch_artifacts(
    session: &mut HostSession,
    reported: &BTreeMap<Utf8PathBuf, String>,
    layout: &Layout,
    output: &Utf8Path,
    progress: &mut dyn crate::progress::Progress,
    cancel: &crate::cancel::Cancel,
) -> anyhow::Result<Vec<Artifact>> {
    let asked: Vec<(Utf8PathBuf, &String)> = reported
        .iter()
        .map(|(path, build)| (layout.workdir.join(path), build))
        .collect();
    let paths: Vec<Utf8PathBuf> = asked.iter().map(|(path, _)| path.clone()).collect();
    let files = session.hash(&paths, cancel)?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let host = session.host().name.clone();
    let mut names: BTreeMap<&str, &Utf8Path> = BTreeMap::new();
    for file in &files {
        let name = file.path.file_name().unwrap_or_default();
        if let Some(first) = names.insert(name, &file.path) {
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "two artifacts on build host `{host}` are named {name} ({first} and {}); they would land on one file in {output}",
                    file.path
                ),
            )
            .into());
        }
    }
    progress.note(format!(
        "copying {} artifact{} back from build host `{host}`",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    ));
    let remote_paths: Vec<Utf8PathBuf> = files.iter().map(|file| file.path.clone()).collect();
    session.fetch(&remote_paths, output, cancel)?;
    let mut artifacts = Vec::new();
    for file in files {
        let local = output.join(file.path.file_name().unwrap_or_default());
        let local = local
            .canonicalize_utf8()
            .with_context(|| format!("resolving {local}"))?;
        let mut artifact = describe_artifact(&local)?;
        if artifact.sha256 != file.sha256 || artifact.bytes != file.bytes {
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "artifact {} changed on its way from build host `{host}`: on the host {} was sha256 {} ({} bytes), here it is sha256 {} ({} bytes); the copy is not trusted",
                    artifact.path.file_name().unwrap_or_default(),
                    file.path,
                    file.sha256,
                    file.bytes,
                    artifact.sha256,
                    artifact.bytes
                ),
            )
            .into());
        }
        artifact.build = asked
            .iter()
            .find(|(path, _)| *path == file.given)
            .map(|(_, build)| (*build).clone());
        artifacts.push(artifact);
    }
    Ok(artifacts)
}

/// Artifact files Packer reported (relative ones resolved from its working directory), each
/// with the build that reported it, plus any other `*.ova` in the output directory; only files
/// that exist (`artifice` lists missing files without failing), each once.
fn collect_artifacts(
    reported: &BTreeMap<Utf8PathBuf, String>,
    workdir: &Utf8Path,
    output_dir: &Utf8Path,
) -> anyhow::Result<Vec<(Utf8PathBuf, Option<String>)>> {
    let mut found: BTreeMap<Utf8PathBuf, Option<String>> = BTreeMap::new();
    let mut candidates: Vec<(Utf8PathBuf, Option<String>)> = reported
        .iter()
        .map(|(path, build)| (workdir.join(path), Some(build.clone())))
        .collect();
    if let Ok(entries) = output_dir.read_dir_utf8() {
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {output_dir}"))?
                .into_path();
            if is_ova(&path) {
                candidates.push((path, None));
            }
        }
    }
    for (candidate, build) in candidates {
        if candidate.is_file()
            && let Ok(real) = candidate.canonicalize_utf8()
        {
            found.entry(real).or_insert(build);
        }
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::super::{ID, SCHEMA};
    use super::*;
    use crate::inputs::{self, Layer, Origin, Setting, Value};

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
            builds: template::Builds::unknown("not read in these tests".into()),
            auto_var_files: Vec::new(),
            digests: Vec::new(),
        }
    }

    fn layer(pairs: &[(&str, &str)], origin: Origin) -> Layer {
        Layer(
            pairs
                .iter()
                .map(|(k, v)| Setting::new(*k, *v, origin.clone()))
                .collect(),
        )
    }

    /// A var file as read from `text`, named `name` (`.hcl` or `.json`); `auto` for one of the
    /// template's own.
    fn var_file(name: &str, text: &str, auto: bool) -> LoadedVarFile {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join(name);
        std::fs::write(&path, text).unwrap();
        LoadedVarFile {
            file: var_files::read(&path, name).unwrap(),
            auto,
        }
    }

    /// Resolves inputs as `create` does (profile layer, then `--input`) and binds them.
    fn prepared(
        template: Template,
        profile: &[(&str, &str)],
        command_line: &[(&str, &str)],
        sensitive: &[&str],
    ) -> (Build, Vec<String>, BTreeMap<String, String>) {
        prepared_with(template, profile, command_line, sensitive, Vec::new())
    }

    fn prepared_with(
        template: Template,
        profile: &[(&str, &str)],
        command_line: &[(&str, &str)],
        sensitive: &[&str],
        var_files: Vec<LoadedVarFile>,
    ) -> (Build, Vec<String>, BTreeMap<String, String>) {
        let mut inputs = inputs::resolve(
            ID,
            &SCHEMA,
            &layer(profile, Origin::Profile("p.toml:1:1".into())),
            &layer(command_line, Origin::CommandLine),
            &sensitive.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let bindings = bind_variables(&template, &mut inputs, "t.pkr.hcl", &var_files).unwrap();
        let mut notes = Vec::new();
        let selection = selection::select(&template, "t", &inputs, &mut notes).unwrap();
        let build = Build {
            template,
            packer: Ok("/usr/bin/packer".into()),
            notes: overridden_values(&bindings, &var_files),
            bindings,
            var_files,
            selection,
            warnings: Vec::new(),
            inputs,
            provenance: BuildProvenance::default(),
        };
        let layout = Layout {
            output: "/out".into(),
            secrets: "/work/vars.json".into(),
            tmpdir: "/work".into(),
            ..Layout::local(
                &build.template,
                &build.var_files,
                &crate::registry::Registry::existing(Utf8Path::new("/state")).dirs("sb-x"),
                "/work".into(),
            )
        };
        let (args, secrets) = build.build_args(&layout, "local", OnFailure::Cleanup);
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
        let redacted = Value::Single(inputs::REDACTED.to_owned());
        assert_eq!(recorded["project"], redacted);
        assert_eq!(recorded["vm_name"], redacted);
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
                    Setting::new("packer_template", "t", Origin::CommandLine),
                    Setting::new("vm_name", "vm", Origin::CommandLine),
                    Setting::new(format!("var.{owned}"), "x", Origin::CommandLine),
                ]),
                &[],
            )
            .unwrap();
            let err = bind_variables(&template(&[(owned, false)]), &mut inputs, "t", &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is set by sandboxer itself"), "{owned}: {err}");
        }
    }

    #[test]
    fn var_files_follow_packers_precedence_and_inputs_beat_them() {
        let files = vec![
            var_file(
                "a.auto.pkrvars.hcl",
                "os = \"auto\"\nvm_name = \"from-auto\"\n",
                true,
            ),
            var_file("one.pkrvars.hcl", "os = \"one\"\nsize = \"1G\"\n", false),
            var_file(
                "two.pkrvars.json",
                "{\"os\": \"two\", \"disk\": \"d\"}",
                false,
            ),
        ];
        let (build, args, secrets) = prepared_with(
            template(&[
                ("vm_name", false),
                ("os", false),
                ("size", false),
                ("disk", false),
            ]),
            &[("packer_template", "t.pkr.hcl"), ("vm_name", "vm")],
            &[("var.size", "2G"), ("only", "null.a")],
            &[],
            files,
        );
        let source_of = |variable: &str| {
            build
                .bindings
                .iter()
                .find(|binding| binding.variable == variable)
                .map(|binding| binding.source.clone())
        };
        assert_eq!(
            source_of("os"),
            Some(Source::VarFile {
                file: 2,
                assignment: 0
            })
        );
        assert_eq!(
            source_of("disk"),
            Some(Source::VarFile {
                file: 2,
                assignment: 1
            })
        );
        assert_eq!(source_of("size"), Some(Source::Input("var.size".into())));
        assert_eq!(source_of("vm_name"), Some(Source::Input("vm_name".into())));
        assert!(secrets.is_empty());
        let var_file_args: Vec<&str> = args
            .iter()
            .filter(|arg| arg.starts_with("-var-file="))
            .map(|arg| arg.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            var_file_args,
            ["one.pkrvars.hcl", "two.pkrvars.json"],
            "listed files in order, the template's own left to Packer: {args:?}"
        );
        assert!(args.contains(&"size=2G".to_owned()), "{args:?}");
        assert!(!args.iter().any(|arg| arg.starts_with("os=")), "{args:?}");
        assert!(args.contains(&"-only=null.a".to_owned()), "{args:?}");
        assert_eq!(args.last().unwrap(), "/t/t.pkr.hcl");
        let notes = build.notes.join("\n");
        assert!(
            notes.contains("a.auto.pkrvars.hcl:2:1: `vm_name` is overridden by input `vm_name`")
                && notes.contains("one.pkrvars.hcl:2:1: `size` is overridden by input `var.size`"),
            "{notes}"
        );
    }

    #[test]
    fn sensitive_values_from_var_files_are_secrets_and_stay_out_of_argv() {
        let files = vec![
            var_file(
                "one.pkrvars.hcl",
                "token = \"first-s3cret\"\nuser = \"bob\"\n",
                false,
            ),
            var_file(
                "two.pkrvars.hcl",
                "token = \"second-s3cret\"\nlist = [\"l1\", 7]\n",
                false,
            ),
        ];
        let (build, args, secrets) = prepared_with(
            template(&[
                ("vm_name", false),
                ("token", true),
                ("user", false),
                ("list", false),
            ]),
            &[("packer_template", "t.pkr.hcl"), ("vm_name", "vm")],
            &[],
            &["var.list"],
            files,
        );
        assert!(
            secrets.is_empty(),
            "var-file values are never copied: {secrets:?}"
        );
        let joined = args.join(" ");
        assert!(
            !joined.contains("s3cret") && !joined.contains("l1"),
            "{joined}"
        );
        let hidden = build.secrets(Utf8Path::new("/out"), "local");
        for secret in ["first-s3cret", "second-s3cret", "l1", "7"] {
            assert!(hidden.contains(&secret.to_owned()), "{secret}: {hidden:?}");
        }
        assert!(!hidden.contains(&"bob".to_owned()), "{hidden:?}");
    }

    #[test]
    fn a_private_var_file_comes_after_the_listed_ones() {
        let files = vec![var_file(
            "one.pkrvars.hcl",
            "token = \"from-file\"\n",
            false,
        )];
        let (_, args, secrets) = prepared_with(
            template(&[("vm_name", false), ("token", true)]),
            &[("packer_template", "t.pkr.hcl"), ("vm_name", "vm")],
            &[("var.token", "from-input")],
            &[],
            files,
        );
        assert_eq!(secrets["token"], "from-input");
        let var_files: Vec<&String> = args
            .iter()
            .filter(|arg| arg.starts_with("-var-file="))
            .collect();
        assert_eq!(var_files.len(), 2, "{args:?}");
        assert_eq!(var_files[1], "-var-file=/work/vars.json", "{args:?}");
    }

    /// Issue 13: provenance names every `-var` value but a secret's, and never hashes a file
    /// that sets a secret (a hash of a short secret gives it away).
    #[test]
    fn provenance_redacts_secrets_and_does_not_hash_files_that_set_them() {
        let mut template = template(&[
            ("vm_name", false),
            ("token", true),
            ("os", false),
            ("output_directory", false),
        ]);
        template.digests = vec![FileDigest {
            path: "t.pkr.hcl".into(),
            sha256: provenance::sha256_hex(b"template"),
        }];
        let os_text = "os = \"debian\"\n";
        let secret_text = "token = \"hush\"\n";
        let (build, _, _) = prepared_with(
            template,
            &[("packer_template", "t.pkr.hcl")],
            &[("vm_name", "vm"), ("var.token", "s3cret")],
            &[],
            vec![
                var_file("secret.pkrvars.hcl", secret_text, false),
                var_file("os.pkrvars.hcl", os_text, false),
            ],
        );
        let static_part = build.static_provenance("t.pkr.hcl", &build.inputs, Some("1.6.6".into()));
        let dirs = crate::registry::Registry::existing(Utf8Path::new("/state")).dirs("sb-x");
        let provenance = Build {
            provenance: static_part,
            ..build
        }
        .provenance(&dirs, "local")
        .unwrap();
        assert_eq!(
            provenance.variables,
            BTreeMap::from([
                ("output_directory".to_owned(), dirs.output.to_string()),
                ("token".to_owned(), REDACTED.to_owned()),
                ("vm_name".to_owned(), "vm".to_owned()),
            ])
        );
        assert_eq!(provenance.var_files[0].sha256, REDACTED);
        assert_eq!(
            provenance.var_files[1].sha256,
            provenance::sha256_hex(os_text.as_bytes())
        );
        assert_eq!(
            provenance.template.as_ref().unwrap().sha256,
            provenance::sha256_hex(b"template")
        );
        assert_eq!(
            provenance.tool.as_ref().unwrap().version.as_deref(),
            Some("1.6.6")
        );
        let json = serde_json::to_string(&provenance).unwrap();
        for leak in [
            "s3cret",
            "hush",
            &provenance::sha256_hex(secret_text.as_bytes()),
        ] {
            assert!(!json.contains(leak), "{leak} in {json}");
        }
    }

    #[test]
    fn var_files_are_checked_against_the_template() {
        let template = template(&[("vm_name", false), ("os", false)]);
        let undeclared = vec![var_file(
            "x.pkrvars.hcl",
            "os = \"a\"\n\noss = \"b\"\n",
            false,
        )];
        let mut warnings = Vec::new();
        check_var_files(&template, "t", &undeclared, false, &mut warnings).unwrap();
        assert_eq!(
            warnings,
            [
                "x.pkrvars.hcl:3:1: undefined variable `oss`: set here, but template t declares no such variable; did you mean `os`? (Packer ignores it; `strict_vars = true` makes this an error)"
            ]
        );
        let err = check_var_files(&template, "t", &undeclared, true, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("did you mean `os`? (strict_vars = true)"),
            "{err}"
        );

        for owned in ["vm_name", "output_directory", "placement_host", "project"] {
            let listed = vec![var_file(
                "x.pkrvars.hcl",
                &format!("{owned} = \"x\"\n"),
                false,
            )];
            let err = check_var_files(&template, "t", &listed, false, &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "x.pkrvars.hcl:1:1: `{owned}` is set by sandboxer itself"
                )),
                "{err}"
            );
            // The template's own var file may: sandboxer's -var beats it, like a default.
            let auto = vec![var_file(
                "x.auto.pkrvars.hcl",
                &format!("{owned} = \"x\"\n"),
                true,
            )];
            let declares_it = super::tests::template(&[(owned, false)]);
            check_var_files(&declares_it, "t", &auto, true, &mut Vec::new()).unwrap();
        }
    }
}
