//! The command line: parses arguments and the environment into library requests, runs them,
//! and prints the results (`render`). It decides nothing itself.
//!
//! Human messages go to stderr; `--json` output goes to stdout; the two never mix.

mod args;
mod complete;
mod render;

use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use clap::CommandFactory as _;

use crate::artifacts::PruneRequest;
use crate::cancel::Cancel;
use crate::error::{kind_of, usage};
use crate::ext::{self, Environment};
use crate::history::ListFilter;
use crate::hub;
use crate::lifecycle::{self, Config, CreateRequest, TeardownOutcome};
use crate::pool::PoolFile;
use crate::profile::{Catalog, SearchPath};
use crate::progress::FanOut;
use crate::progress::cloudevents::JsonLines;
use crate::progress::terminal::{Mode, Terminal};
use crate::registry::Registry;
use crate::shim::{self, InstallOptions};
use args::{
    ArtifactsCommand, Cli, Command, CreateArgs, ExtendArgs, GcArgs, GlobalArgs, HubCommand,
    ListArgs, LogsArgs, ProfilesCommand, ProgressFormat, PruneArgs, ShimCheckArgs, ShimCommand,
    ShimInstallArgs, ShowArgs, SshArgs, TeardownArgs,
};

/// The whole command line as clap sees it: for man pages and completion scripts.
pub fn command() -> clap::Command {
    args::with_examples(Cli::command())
}

/// `main` for a program that adds its own extensions to the built-in ones (see the extension
/// SDK guide): registers them, then behaves exactly as the `sandboxer` binary.
pub fn main_with(extensions: &'static [&'static dyn ext::Extension]) -> ExitCode {
    if let Err(err) = ext::register(extensions) {
        render::note(&format!("error: {err:#}"));
        return ExitCode::from(crate::error::ErrorKind::Failed.exit_code());
    }
    main()
}

/// Parses the command line, runs the command, prints any error once, and returns the exit code.
pub fn main() -> ExitCode {
    complete::answer_if_asked();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let parsed = command()
        .try_get_matches_from(&argv)
        .and_then(|matches| <Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => return clap_error(err, &argv),
    };
    let json = cli.command.json();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let kind = kind_of(&err);
            let message = format!("{err:#}");
            render::note(&format!("error: {message}"));
            if json && !crate::error::is_in_report(&err) {
                let object = serde_json::json!({
                    "error": kind.slug(),
                    "message": message,
                    "exit_code": kind.exit_code(),
                });
                let _ = writeln!(std::io::stdout(), "{object}");
            }
            ExitCode::from(kind.exit_code())
        }
    }
}

/// clap's own errors (and `--help`/`--version`), plus a JSON error object on stdout when the
/// command line asked for `--json`, so scripts never have to parse prose. Arguments are looked
/// at as raw bytes: one that is not UTF-8 is clap's error to report, never a panic here.
fn clap_error(err: clap::Error, argv: &[OsString]) -> ExitCode {
    let _ = err.print();
    if !err.use_stderr() {
        return ExitCode::SUCCESS; // --help, --version
    }
    if argv.iter().skip(1).any(|arg| arg == "--json") {
        let rendered = err.render().to_string();
        let first_line = rendered.lines().next().unwrap_or("usage error");
        let message = first_line.trim_start_matches("error: ");
        let object = serde_json::json!({"error": "usage", "message": message, "exit_code": 2});
        let _ = writeln!(std::io::stdout(), "{object}");
    }
    ExitCode::from(2)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let search = search_path(&cli.global.profiles_dirs)?;
    match cli.command {
        Command::Create(args) => create(config(&cli.global, search)?, args, &cli.global),
        Command::List(args) => list(&config(&cli.global, search)?, &args),
        Command::Extend(args) => extend(&config(&cli.global, search)?, &args),
        Command::Gc(args) => gc(&config(&cli.global, search)?, &args),
        Command::Show(args) => show(&config(&cli.global, search)?, &args),
        Command::Teardown(args) => teardown(&config(&cli.global, search)?, &args),
        Command::Ssh(args) => ssh(&config(&cli.global, search)?, &args),
        Command::Profiles(ProfilesCommand::List(args)) => {
            render::profiles_list(&Catalog::load(&search)?, args.json)
        }
        Command::Profiles(ProfilesCommand::Show(args)) => {
            let catalog = Catalog::load(&search)?;
            let entry = catalog.find(&args.name)?;
            let extension = ext::find(&entry.profile.extension)
                .context("profiles only name known extensions")?;
            render::profile_show(entry, extension, args.json)
        }
        Command::Artifacts(ArtifactsCommand::List(args)) => {
            artifacts_list(&config(&cli.global, search)?, args.json)
        }
        Command::Artifacts(ArtifactsCommand::Prune(args)) => {
            artifacts_prune(&config(&cli.global, search)?, &args)
        }
        Command::Logs(args) => logs(&config(&cli.global, search)?, &args),
        Command::Doctor(args) => doctor(&cli.global, &search, &args),
        Command::Hub(HubCommand::Status(args)) => {
            let config = config(&cli.global, search)?;
            let status = hub::status(config.registry.root(), &hub_settings(&cli.global)?)?;
            render::hub_status(&status, args.json)
        }
        Command::Hub(HubCommand::Flush(args)) => {
            let config = config(&cli.global, search)?;
            hub_flush(&config, &hub_settings(&cli.global)?, args.json)
        }
        Command::Hosts(args) => {
            let (pool, reports) = lifecycle::hosts(&config(&cli.global, search)?)?;
            render::hosts(&pool, &reports, args.json)
        }
        Command::Completions(args) => {
            let mut out = render::stdout();
            complete::registration(args.shell, &mut out)?;
            out.flush()?;
            Ok(())
        }
        Command::Shim(ShimCommand::Install(args)) => shim_install(&args),
        Command::Shim(ShimCommand::Check(args)) => shim_check(&args),
    }
}

/// An environment variable's value; unset and empty are the same. A value that is not UTF-8
/// is a usage error naming the variable, never silently ignored.
fn env_var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(usage(format!(
            "environment variable {name} is not valid UTF-8"
        ))),
    }
}

fn env_path(name: &str) -> anyhow::Result<Option<Utf8PathBuf>> {
    Ok(env_var(name)?.map(Utf8PathBuf::from))
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
fn config_dir() -> anyhow::Result<Option<Utf8PathBuf>> {
    Ok(match env_path("XDG_CONFIG_HOME")? {
        Some(dir) => Some(dir),
        None => env_path("HOME")?.map(|home| home.join(".config")),
    })
}

/// The host pool file: `$SANDBOXER_HOSTS` (which must exist), else
/// `$XDG_CONFIG_HOME/sandboxer/hosts.toml` (which may not).
fn pool_file(cwd: &Utf8Path) -> anyhow::Result<Option<PoolFile>> {
    if let Some(path) = env_path("SANDBOXER_HOSTS")? {
        return Ok(Some(PoolFile {
            path: cwd.join(path),
            required: true,
            named_by: "SANDBOXER_HOSTS".to_owned(),
        }));
    }
    Ok(config_dir()?.map(|dir| PoolFile {
        path: cwd.join(dir).join("sandboxer/hosts.toml"),
        required: false,
        named_by: "the default pool file".to_owned(),
    }))
}

fn search_path(profiles_dirs: &[Utf8PathBuf]) -> anyhow::Result<SearchPath> {
    let env_list = env_var("SANDBOXER_PROFILES")?;
    Ok(SearchPath::standard(
        profiles_dirs,
        env_list.as_deref(),
        config_dir()?.as_deref(),
    ))
}

/// State Hub's settings from the environment and the user config file; errors (a token for
/// plain http, an unreadable token file) before anything runs.
fn hub_settings(global: &GlobalArgs) -> anyhow::Result<hub::Settings> {
    let config_url = match config_dir()? {
        Some(dir) => crate::config::load(&dir.join("sandboxer/config.toml"))?.state_hub_url,
        None => None,
    };
    let settings = hub::resolve(&hub::Sources {
        url: env_var("STATE_HUB_URL")?,
        token: env_var("STATE_HUB_TOKEN")?,
        token_file: env_path("STATE_HUB_TOKEN_FILE")?,
        config_url,
    })?;
    if global.verbose {
        match &settings.endpoint {
            None => render::note(
                "sandboxer: State Hub is off (no STATE_HUB_URL, and no [state_hub] url in the config file)",
            ),
            Some(endpoint) => render::note(&format!(
                "sandboxer: State Hub events go to {} (from {}), {}",
                endpoint.events_url(),
                settings.url_from,
                if endpoint.token.is_some() {
                    "with a token"
                } else {
                    "without a token"
                }
            )),
        }
    }
    Ok(settings)
}

/// The state directory: `--state-dir`, else `$SANDBOXER_HOME` (both arrive through clap when
/// parsing; completions read the variable here), else `$XDG_STATE_HOME/sandboxer`, else
/// `~/.local/state/sandboxer`. `None` when nothing says where.
fn state_dir(explicit: Option<&Utf8Path>) -> anyhow::Result<Option<Utf8PathBuf>> {
    if let Some(dir) = explicit {
        return Ok(Some(dir.to_owned()));
    }
    if let Some(dir) = env_path("SANDBOXER_HOME")? {
        return Ok(Some(dir));
    }
    let base = match env_path("XDG_STATE_HOME")? {
        Some(dir) => Some(dir),
        None => env_path("HOME")?.map(|home| home.join(".local/state")),
    };
    Ok(base.map(|base| base.join("sandboxer")))
}

fn config(global: &GlobalArgs, search: SearchPath) -> anyhow::Result<Config> {
    let state_dir = state_dir(global.state_dir.as_deref())?
        .context("cannot find a state directory: set SANDBOXER_HOME, XDG_STATE_HOME or HOME")?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(|path| {
        usage(format!(
            "the current directory {} is not valid UTF-8",
            path.display()
        ))
    })?;
    let state_dir = cwd.join(state_dir);
    let registry = Registry::open(&state_dir)?;
    let pool_file = pool_file(&cwd)?;
    Ok(Config {
        pool_file,
        env: Environment {
            cwd,
            cache_dir: registry.cache_dir(),
            packer: env_path("SANDBOXER_PACKER")?,
            cancel_timeout: std::time::Duration::from_secs(30),
            verbose: global.verbose,
            known_hosts: registry.known_hosts(),
            port_registry: env_path("SANDBOXER_PORT_REGISTRY")?,
            heartbeat: Some(std::time::Duration::from_secs(60)),
        },
        registry,
        search,
        hub: hub::Settings::default(),
        retention: crate::history::DEFAULT_RETENTION,
    })
}

fn create(mut config: Config, args: CreateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let jsonl = args.progress == ProgressFormat::Jsonl;
    if jsonl && args.json {
        return Err(usage(
            "--progress=jsonl and --json both write to stdout: use --json for the final record only, or --progress=jsonl for every event (its last one, `finished`, carries the outcome)",
        ));
    }
    config.env.cancel_timeout = args.cancel_timeout;
    config.env.heartbeat = Some(args.heartbeat).filter(|interval| !interval.is_zero());
    config.hub = hub_settings(global)?;
    let request = CreateRequest {
        profile: args.profile.unwrap_or_default(),
        like: args.like,
        inputs: args.inputs,
        ttl: args.ttl,
        on_failure: args.on_failure,
        no_wait: args.no_wait,
        force: args.force,
    };
    let cancel = Arc::new(Cancel::new());
    // Installed before anything is spawned, so no signal can slip past us to a half-started build.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    let signals_handle = signals.handle();
    let signal_thread = {
        let cancel = Arc::clone(&cancel);
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let signal = if signal == signal_hook::consts::SIGHUP {
                    signal_hook::consts::SIGTERM
                } else {
                    signal
                };
                cancel.request(signal);
            }
        })
    };
    let mode = if args.quiet {
        Mode::Quiet
    } else if std::io::stderr().is_terminal() {
        Mode::Live {
            color: env_var("NO_COLOR").ok().flatten().is_none(),
        }
    } else {
        Mode::Plain
    };
    let mut terminal = Terminal::new(mode);
    let notifier = terminal.notifier();
    config.hub.warn = Some(Arc::new(move |text: &str| notifier.warn(text)));
    let result = {
        let mut lines = JsonLines;
        let mut sinks = FanOut::default().with(&mut terminal);
        if jsonl {
            sinks = sinks.with(&mut lines);
        }
        lifecycle::create(&config, &request, &mut sinks, &cancel)
    };
    drop(terminal); // clears the status line before the result is printed
    signals_handle.close();
    let _ = signal_thread.join();

    let record = result?;
    render::note(&render::describe_ready(&record));
    if args.json {
        render::json(&record)
    } else if jsonl {
        Ok(()) // stdout holds the events; the last one names the sandbox and its state
    } else {
        let mut out = render::stdout();
        writeln!(out, "{}", record.id)?;
        out.flush()?;
        Ok(())
    }
}

/// `hub flush`: sends what waits in the spool and reports per sandbox.
fn hub_flush(config: &Config, settings: &hub::Settings, json: bool) -> anyhow::Result<()> {
    let Some(endpoint) = &settings.endpoint else {
        return Err(usage(
            "State Hub is off: set STATE_HUB_URL (or `url` in the [state_hub] table of the config file) to flush the spool",
        ));
    };
    let flushed = hub::flush(config.registry.root(), endpoint)?;
    render::hub_flush(&flushed, json)
}

fn list(config: &Config, args: &ListArgs) -> anyhow::Result<()> {
    let filter = ListFilter {
        all: args.all,
        states: args.states.clone(),
        profiles: args.profiles.clone(),
        modes: args.modes.clone(),
        since: args
            .since
            .map(|since| since.resolve(jiff::Timestamp::now())),
        expired_only: args.expired,
    };
    let listing = crate::history::list(config, &filter)?;
    for (id, err) in &listing.unreadable {
        render::note(&format!("warning: sandbox {id}: {err:#}"));
    }
    if args.json {
        return render::json(&listing.records);
    }
    if listing.records.is_empty() {
        let filtered = !filter.states.is_empty()
            || !filter.profiles.is_empty()
            || !filter.modes.is_empty()
            || filter.since.is_some();
        let what = match (args.expired, filtered, args.all) {
            (true, _, _) => "expired sandboxes",
            (false, true, _) => "sandboxes that match",
            (false, false, true) => "sandboxes",
            (false, false, false) => "live sandboxes (`--all` shows ended ones too)",
        };
        render::note(&format!("no {what} in {}", config.registry.root()));
        return Ok(());
    }
    render::list(&listing.records)
}

fn artifacts_list(config: &Config, json: bool) -> anyhow::Result<()> {
    let inventory = crate::artifacts::inventory(config)?;
    render::inventory_problems(&inventory);
    render::artifacts(&inventory, config.registry.root(), json)
}

fn artifacts_prune(config: &Config, args: &PruneArgs) -> anyhow::Result<()> {
    let request = PruneRequest {
        keep_last: args.keep_last,
        older_than: args.older_than,
        max_total: args.max_total,
        dry_run: args.dry_run,
    };
    let report = crate::artifacts::prune(config, &request)?;
    for (id, err) in &report.unreadable {
        render::note(&format!("warning: sandbox {id}: {err:#}"));
    }
    render::prune(&report, args.dry_run, args.json)?;
    match report.failures() {
        0 => Ok(()),
        failed => Err(crate::error::partly_failed(format!(
            "{failed} of {} artifacts could not be pruned; see above",
            report.entries.len()
        ))),
    }
}

fn show(config: &Config, args: &ShowArgs) -> anyhow::Result<()> {
    if args.provenance {
        let document = crate::history::provenance(config, &args.id)?;
        return if args.json {
            render::json(&document)
        } else {
            render::provenance(&document)
        };
    }
    let record = lifecycle::show(config, &args.id)?;
    if args.json {
        render::json(&record)
    } else {
        render::show(&record)
    }
}

fn teardown(config: &Config, args: &TeardownArgs) -> anyhow::Result<()> {
    if let [id] = args.ids.as_slice() {
        let outcome = lifecycle::teardown(config, id)?;
        render::note(&render::teardown_message(&outcome));
        if args.json {
            render::json(outcome.record())?;
        }
        return Ok(());
    }
    let outcomes = lifecycle::teardown_each(config, &args.ids);
    let mut failed = 0;
    let mut entries = Vec::new();
    for (id, outcome) in &outcomes {
        match outcome {
            Ok(outcome) => {
                render::note(&render::teardown_message(outcome));
                let result = match outcome {
                    TeardownOutcome::TornDown(_) => "torn-down",
                    TeardownOutcome::AlreadyGone(_) => "already-gone",
                };
                entries.push(serde_json::json!({
                    "id": outcome.record().id, "outcome": result, "record": outcome.record(),
                }));
            }
            Err(err) => {
                failed += 1;
                render::note(&format!("error: {id}: {err:#}"));
                entries.push(serde_json::json!({
                    "id": id, "outcome": "failed", "error": crate::error::kind_of(err).slug(),
                    "message": format!("{err:#}"),
                }));
            }
        }
    }
    if args.json {
        render::json(&entries)?;
    }
    if failed > 0 {
        return Err(crate::error::partly_failed(format!(
            "{failed} of {} teardowns failed; see above",
            outcomes.len()
        )));
    }
    Ok(())
}

fn doctor(global: &GlobalArgs, search: &SearchPath, args: &args::DoctorArgs) -> anyhow::Result<()> {
    let state_dir = state_dir(global.state_dir.as_deref())?
        .context("cannot find a state directory: set SANDBOXER_HOME, XDG_STATE_HOME or HOME")?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let state_dir = match Utf8PathBuf::from_path_buf(cwd) {
        Ok(cwd) => cwd.join(state_dir),
        Err(_) => state_dir,
    };
    let packer = env_path("SANDBOXER_PACKER")?;
    let port_registry = env_path("SANDBOXER_PORT_REGISTRY")?;
    let state_hub = hub_settings(global).map_err(|err| format!("{err:#}"));
    let checks = crate::doctor::run(&crate::doctor::Setup {
        state_dir: &state_dir,
        search,
        packer: packer.as_deref(),
        state_hub,
        port_registry: port_registry.as_deref(),
        shim_dest: args.shim_dest.as_deref(),
    });
    render::doctor(&checks, args.json)?;
    let failed = checks
        .iter()
        .filter(|check| check.status == crate::doctor::Status::Fail)
        .count();
    match failed {
        0 => Ok(()),
        failed => Err(crate::error::partly_failed(format!(
            "{failed} of {} checks failed",
            checks.len()
        ))),
    }
}

fn logs(config: &Config, args: &LogsArgs) -> anyhow::Result<()> {
    let mut out = render::stdout();
    let record = crate::logs::copy(config, &args.id, args.follow, &mut out)?;
    out.flush()?;
    if args.follow {
        render::note(&render::describe_end(&record));
    }
    Ok(())
}

/// Becomes `ssh` (exec), so the terminal, stdin and stdout, signals and the exit code are the
/// remote side's, with nothing of sandboxer's in between.
fn ssh(config: &Config, args: &SshArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let mut command = lifecycle::ssh_command(config, &args.id, &args.command)?;
    let err = command.exec();
    Err(err).with_context(|| format!("running {:?}", command.get_program()))
}

fn extend(config: &Config, args: &ExtendArgs) -> anyhow::Result<()> {
    let record = lifecycle::extend(config, &args.id, args.ttl)?;
    let left =
        crate::duration::human_remaining(record.expires_at.duration_since(jiff::Timestamp::now()));
    render::note(&format!(
        "sandbox {} now expires at {} (in {left})",
        record.id, record.expires_at
    ));
    if args.json {
        render::json(&record)?;
    }
    Ok(())
}

/// `[history] retention` from the user config file, for the commands that purge.
fn retention() -> anyhow::Result<crate::duration::Age> {
    let configured = match config_dir()? {
        Some(dir) => crate::config::load(&dir.join("sandboxer/config.toml"))?.retention,
        None => None,
    };
    Ok(configured.unwrap_or(crate::history::DEFAULT_RETENTION))
}

fn gc(config: &Config, args: &GcArgs) -> anyhow::Result<()> {
    let config = &Config {
        retention: retention()?,
        ..config.clone()
    };
    let report = lifecycle::gc(config, args.dry_run)?;
    for (id, err) in &report.unreadable {
        render::note(&format!("warning: sandbox {id}: {err:#}"));
    }
    render::gc(&report, args.json)?;
    match report.failures() {
        0 => Ok(()),
        failed => Err(crate::error::partly_failed(format!(
            "gc could not collect {failed} sandbox(es); see above"
        ))),
    }
}

fn shim_install(args: &ShimInstallArgs) -> anyhow::Result<()> {
    let options = InstallOptions {
        force: args.force,
        edit_makefile: args.edit_makefile,
    };
    let report = shim::install(&args.dest, options)?;
    render::shim_install(&report, args.json)
}

fn shim_check(args: &ShimCheckArgs) -> anyhow::Result<()> {
    let report = shim::check(&args.dest)?;
    render::shim_check(&report, args.json)?;
    match report.failure() {
        None => Ok(()),
        Some(message) => Err(crate::error::partly_failed(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::args::EXIT_CODES;
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_in_help_match_the_code() {
        for kind in [
            ErrorKind::Failed,
            ErrorKind::Usage,
            ErrorKind::NotFound,
            ErrorKind::PlacementFull,
            ErrorKind::Interrupted,
            ErrorKind::Terminated,
        ] {
            assert!(
                EXIT_CODES.contains(&format!("  {:<4} ", kind.exit_code())),
                "{kind:?}"
            );
        }
    }
}
