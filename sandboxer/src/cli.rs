//! The command line: clap types, turning them into plain requests, and printing results.
//!
//! Human messages go to stderr; `--json` output goes to stdout; the two never mix.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::kind_of;
use crate::ext::{self, Host, OnFailure};
use crate::inputs::{Origin, parse_assignment};
use crate::lifecycle::{self, Config, CreateRequest, TeardownOutcome};
use crate::profile::{Catalog, Entry, SearchPath};
use crate::progress::{Sink, Terminal};
use crate::record::Record;
use crate::registry::Registry;
use crate::ttl::{Ttl, human_remaining};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the operation failed (e.g. the Packer build failed)
  2    usage or input error
  3    not found
  4    placement full (with --no-wait)
  130  cancelled by SIGINT
  143  cancelled by SIGTERM";

/// Provision and track build sandboxes.
#[derive(Debug, Parser)]
#[command(name = "sandboxer", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
struct GlobalArgs {
    /// State directory [default: $XDG_STATE_HOME/sandboxer or ~/.local/state/sandboxer]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "SANDBOXER_HOME",
        hide_env_values = true
    )]
    state_dir: Option<Utf8PathBuf>,

    /// Search DIR for profiles first (repeatable); then $SANDBOXER_PROFILES, ./profiles,
    /// $XDG_CONFIG_HOME/sandboxer/profiles and the built-in profiles
    #[arg(long = "profiles-dir", global = true, value_name = "DIR")]
    profiles_dirs: Vec<Utf8PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a sandbox from a profile and provision it
    #[command(
        after_help = "Inputs resolve as: extension defaults < the profile's [inputs] < --input.\n`--input mode=build|attach` overrides the profile's mode.\nOn success the sandbox id is printed on stdout (the record with --json)."
    )]
    Create(CreateArgs),
    /// List sandboxes, with the time each has left
    List(ListArgs),
    /// Show one sandbox's record
    Show(IdArgs),
    /// Tear a sandbox down (build mode keeps its OVA); safe to repeat
    Teardown(IdArgs),
    /// Push a live sandbox's expiry to DURATION from now
    Extend(ExtendArgs),
    /// Tear down every expired sandbox and stop builds whose sandboxer died
    #[command(
        after_help = "Expired sandboxes are torn down (build mode keeps its OVA) and marked `expired`.\nA sandbox still provisioning is never reaped mid-build; a later gc reaps it once it finishes."
    )]
    Gc(GcArgs),
    /// Inspect profiles
    #[command(subcommand)]
    Profiles(ProfilesCommand),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Profile id (e.g. profile.vm-packer-build; the `profile.` prefix may be left out)
    #[arg(long, value_name = "NAME")]
    profile: String,
    /// Set an input, overriding the profile's default (repeatable)
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE", value_parser = parse_assignment)]
    inputs: Vec<(String, String)>,
    /// Time to live, overriding the profile's (e.g. 45m, 12h, 2d)
    #[arg(long, value_name = "DURATION")]
    ttl: Option<Ttl>,
    /// What a failed build leaves: `cleanup` removes working files and keeps the log, `keep`
    /// keeps everything for debugging [default: the profile's `on_failure`, else cleanup]
    #[arg(long, value_name = "POLICY")]
    on_failure: Option<OnFailure>,
    /// Fail (exit 4) instead of queueing when the placement host is at `max_concurrent`
    #[arg(long)]
    no_wait: bool,
    /// After Ctrl-C or SIGTERM, how long the build may take to cancel before it is killed
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    cancel_timeout: Ttl,
    /// Print the final record (or an error object) as JSON on stdout
    #[arg(long)]
    json: bool,
    /// Do not show the provision's progress on stderr
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only sandboxes past their TTL that are not torn down yet
    #[arg(long)]
    expired: bool,
    /// Print JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExtendArgs {
    /// Sandbox id, or a unique prefix of one
    id: String,
    /// New time to live, counted from now (e.g. 4h); never shortens the current one
    #[arg(long, value_name = "DURATION")]
    ttl: Ttl,
    /// Print the updated record as JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GcArgs {
    /// Only say what would be done
    #[arg(long)]
    dry_run: bool,
    /// Print the actions as JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JsonArg {
    /// Print JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IdArgs {
    /// Sandbox id, or a unique prefix of one
    id: String,
    /// Print JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// List every profile and where it comes from
    List(JsonArg),
    /// Show a profile's values, the extension's defaults, and where each comes from
    Show(ProfileShowArgs),
}

#[derive(Debug, Args)]
struct ProfileShowArgs {
    /// Profile id (the `profile.` prefix may be left out)
    name: String,
    /// Print JSON on stdout
    #[arg(long)]
    json: bool,
}

impl Command {
    fn json(&self) -> bool {
        match self {
            Command::Create(args) => args.json,
            Command::List(args) => args.json,
            Command::Show(args) | Command::Teardown(args) => args.json,
            Command::Extend(args) => args.json,
            Command::Gc(args) => args.json,
            Command::Profiles(ProfilesCommand::List(args)) => args.json,
            Command::Profiles(ProfilesCommand::Show(args)) => args.json,
        }
    }
}

/// Parses the command line, runs the command, prints any error once, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_error(err),
    };
    let json = cli.command.json();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let kind = kind_of(&err);
            let message = format!("{err:#}");
            let _ = writeln!(std::io::stderr(), "error: {message}");
            if json {
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
/// command line asked for `--json`, so scripts never have to parse prose.
fn clap_error(err: clap::Error) -> ExitCode {
    let _ = err.print();
    if !err.use_stderr() {
        return ExitCode::SUCCESS; // --help, --version
    }
    if std::env::args().skip(1).any(|arg| arg == "--json") {
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
    let search = search_path(&cli.global)?;
    match cli.command {
        Command::Create(args) => {
            let mut config = config(&cli.global, search)?;
            config.host.cancel_timeout = args.cancel_timeout.as_duration().unsigned_abs();
            create(config, args)
        }
        Command::List(args) => list(&config(&cli.global, search)?, &args),
        Command::Extend(args) => extend(&config(&cli.global, search)?, &args),
        Command::Gc(args) => gc(&config(&cli.global, search)?, &args),
        Command::Show(args) => show(&config(&cli.global, search)?, &args),
        Command::Teardown(args) => teardown(&config(&cli.global, search)?, &args),
        Command::Profiles(ProfilesCommand::List(args)) => profiles_list(&search, args.json),
        Command::Profiles(ProfilesCommand::Show(args)) => profiles_show(&search, &args),
    }
}

fn env_path(name: &str) -> Option<Utf8PathBuf> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .map(Utf8PathBuf::from)
}

fn search_path(global: &GlobalArgs) -> anyhow::Result<SearchPath> {
    let env_list = std::env::var("SANDBOXER_PROFILES").ok();
    let config_dir =
        env_path("XDG_CONFIG_HOME").or_else(|| env_path("HOME").map(|home| home.join(".config")));
    Ok(SearchPath::standard(
        &global.profiles_dirs,
        env_list.as_deref(),
        config_dir.as_deref(),
    ))
}

fn config(global: &GlobalArgs, search: SearchPath) -> anyhow::Result<Config> {
    let state_dir = match &global.state_dir {
        Some(dir) => dir.clone(),
        None => env_path("XDG_STATE_HOME")
            .or_else(|| env_path("HOME").map(|home| home.join(".local/state")))
            .context("cannot find a state directory: set SANDBOXER_HOME, XDG_STATE_HOME or HOME")?
            .join("sandboxer"),
    };
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let cwd = Utf8PathBuf::from_path_buf(cwd)
        .map_err(|path| anyhow::anyhow!("current directory {} is not UTF-8", path.display()))?;
    let state_dir = cwd.join(state_dir);
    let registry = Registry::open(&state_dir)?;
    Ok(Config {
        host: Host {
            cwd,
            cache_dir: registry.cache_dir(),
            packer: env_path("SANDBOXER_PACKER"),
            cancel_timeout: std::time::Duration::from_secs(30),
        },
        registry,
        search,
    })
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}

fn create(config: Config, args: CreateArgs) -> anyhow::Result<()> {
    let request = CreateRequest {
        profile: args.profile,
        inputs: args.inputs,
        ttl: args.ttl,
        on_failure: args.on_failure,
        no_wait: args.no_wait,
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
    let mut terminal = Terminal { quiet: args.quiet };
    let result = lifecycle::create(&config, &request, &mut terminal as &mut dyn Sink, &cancel);
    signals_handle.close();
    let _ = signal_thread.join();

    let record = result?;
    let _ = writeln!(std::io::stderr(), "{}", describe_ready(&record));
    if args.json {
        print_json(&record)
    } else {
        writeln!(std::io::stdout(), "{}", record.id)?;
        Ok(())
    }
}

fn describe_ready(record: &Record) -> String {
    let mut text = format!("sandbox {} is {}", record.id, record.state);
    for artifact in &record.artifacts {
        text.push_str(&format!(
            "\n  artifact {} ({} bytes, sha256 {})",
            artifact.path, artifact.bytes, artifact.sha256
        ));
    }
    text
}

fn list(config: &Config, args: &ListArgs) -> anyhow::Result<()> {
    let json = args.json;
    let listing = lifecycle::list(config, args.expired)?;
    for (id, err) in &listing.unreadable {
        let _ = writeln!(std::io::stderr(), "warning: sandbox {id}: {err:#}");
    }
    if json {
        return print_json(&listing.records);
    }
    if listing.records.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "no {} in {}",
            if args.expired {
                "expired sandboxes"
            } else {
                "sandboxes"
            },
            config.registry.root()
        );
        return Ok(());
    }
    let now = Timestamp::now();
    let rows: Vec<[String; 6]> = listing
        .records
        .iter()
        .map(|record| {
            let expires = if record.state.is_gone() {
                "-".to_owned()
            } else {
                human_remaining(record.expires_at.duration_since(now))
            };
            [
                record.id.clone(),
                record.profile.clone(),
                record.mode.clone(),
                record.state.to_string(),
                format!(
                    "{} ago",
                    human_remaining(now.duration_since(record.created_at)).replace("expired", "0s")
                ),
                expires,
            ]
        })
        .collect();
    print_table(
        ["ID", "PROFILE", "MODE", "STATE", "CREATED", "EXPIRES IN"],
        &rows,
    )
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> anyhow::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut stdout = std::io::stdout().lock();
    let mut line = |cells: Vec<&str>| -> std::io::Result<()> {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(stdout, "{}", text.join("  ").trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

fn show(config: &Config, args: &IdArgs) -> anyhow::Result<()> {
    let record = lifecycle::show(config, &args.id)?;
    if args.json {
        return print_json(&record);
    }
    let now = Timestamp::now();
    let mut out = String::new();
    let mut field =
        |name: &str, value: String| out.push_str(&format!("{:<11} {value}\n", format!("{name}:")));
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
        format!(
            " ({})",
            human_remaining(record.expires_at.duration_since(now))
        )
    };
    field("expires", format!("{}{left}", record.expires_at));
    let slot = record
        .placement
        .slot
        .map(|slot| format!(" (slot {slot})"))
        .unwrap_or_default();
    field("placement", format!("{}{slot}", record.placement.host));
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
    out.push_str("inputs:\n");
    for (name, value) in &record.inputs {
        out.push_str(&format!("  {name} = {value}\n"));
    }
    if !record.artifacts.is_empty() {
        out.push_str("artifacts:\n");
        for artifact in &record.artifacts {
            out.push_str(&format!(
                "  {} ({} bytes, sha256 {})\n",
                artifact.path, artifact.bytes, artifact.sha256
            ));
        }
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn teardown(config: &Config, args: &IdArgs) -> anyhow::Result<()> {
    let (record, message) = match lifecycle::teardown(config, &args.id)? {
        TeardownOutcome::TornDown(record) => {
            let kept: Vec<String> = record
                .artifacts
                .iter()
                .map(|a| format!("\n  kept {}", a.path))
                .collect();
            let message = format!("sandbox {} torn down{}", record.id, kept.concat());
            (record, message)
        }
        TeardownOutcome::AlreadyGone(record) => {
            let message = format!("sandbox {} is already {}", record.id, record.state);
            (record, message)
        }
    };
    let _ = writeln!(std::io::stderr(), "{message}");
    if args.json {
        print_json(&record)?;
    }
    Ok(())
}

fn extend(config: &Config, args: &ExtendArgs) -> anyhow::Result<()> {
    let record = lifecycle::extend(config, &args.id, args.ttl)?;
    let left = human_remaining(record.expires_at.duration_since(Timestamp::now()));
    let _ = writeln!(
        std::io::stderr(),
        "sandbox {} now expires at {} (in {left})",
        record.id,
        record.expires_at
    );
    if args.json {
        print_json(&record)?;
    }
    Ok(())
}

fn gc(config: &Config, args: &GcArgs) -> anyhow::Result<()> {
    let actions = lifecycle::gc(config, args.dry_run)?;
    let failed = actions
        .iter()
        .filter(|action| action.action == "error")
        .count();
    if args.json {
        print_json(&actions)?;
    } else {
        let mut stderr = std::io::stderr().lock();
        let verb = if args.dry_run { "would " } else { "" };
        for action in &actions {
            let _ = writeln!(
                stderr,
                "{}: {verb}{}: {}",
                action.id, action.action, action.detail
            );
        }
        if actions.is_empty() {
            let _ = writeln!(stderr, "nothing to collect");
        }
    }
    anyhow::ensure!(
        failed == 0,
        "gc could not collect {failed} sandbox(es); see above"
    );
    Ok(())
}

/// A profile as `profiles list/show --json` prints it.
#[derive(Serialize)]
struct ProfileView<'a> {
    id: &'a str,
    description: &'a str,
    extension: &'a str,
    mode: Option<&'a str>,
    ttl: String,
    placement: &'a crate::profile::Placement,
    on_failure: OnFailure,
    source: String,
    shadows: Vec<String>,
}

impl<'a> ProfileView<'a> {
    fn new(entry: &'a Entry) -> Self {
        let profile = &entry.profile;
        let mode = profile
            .inputs
            .0
            .iter()
            .rev()
            .find(|(name, _, _)| name == "mode")
            .map(|(_, value, _)| value.as_str())
            .or_else(|| {
                ext::find(&profile.extension)
                    .and_then(|e| e.input_schema().spec("mode"))
                    .and_then(|s| s.default)
            });
        ProfileView {
            id: &profile.id,
            description: &profile.description,
            extension: &profile.extension,
            mode,
            ttl: profile.ttl.to_string(),
            placement: &profile.placement,
            on_failure: profile.on_failure,
            source: profile.source.to_string(),
            shadows: entry.shadowed.iter().map(ToString::to_string).collect(),
        }
    }
}

fn profiles_list(search: &SearchPath, json: bool) -> anyhow::Result<()> {
    let catalog = Catalog::load(search)?;
    let views: Vec<ProfileView<'_>> = catalog.entries().map(ProfileView::new).collect();
    if json {
        return print_json(&views);
    }
    let rows: Vec<[String; 5]> = views
        .iter()
        .map(|view| {
            let mut source = view.source.clone();
            if !view.shadows.is_empty() {
                source.push_str(&format!(" (shadows {})", view.shadows.join(", ")));
            }
            [
                view.id.to_owned(),
                view.extension.to_owned(),
                view.mode.unwrap_or("-").to_owned(),
                view.ttl.clone(),
                source,
            ]
        })
        .collect();
    print_table(["ID", "EXTENSION", "MODE", "TTL", "SOURCE"], &rows)
}

fn profiles_show(search: &SearchPath, args: &ProfileShowArgs) -> anyhow::Result<()> {
    let catalog = Catalog::load(search)?;
    let entry = catalog.find(&args.name)?;
    let profile = &entry.profile;
    let extension = ext::find(&profile.extension).context("profiles only name known extensions")?;
    // Values as the profile writes them: `{name}` references are expanded at create time.
    let mut layered: std::collections::BTreeMap<String, (String, String)> = extension
        .input_schema()
        .specs
        .iter()
        .filter_map(|spec| {
            Some((
                spec.name.to_owned(),
                (spec.default?.to_owned(), "extension default".to_owned()),
            ))
        })
        .collect();
    for (name, value, origin) in &profile.inputs.0 {
        let from = match origin {
            Origin::Profile(location) => location.clone(),
            Origin::Default => "extension default".to_owned(),
            Origin::CommandLine => "command line".to_owned(),
        };
        let value = if profile.sensitive_inputs.contains(name) {
            crate::inputs::REDACTED.to_owned()
        } else {
            value.clone()
        };
        layered.insert(name.clone(), (value, from));
    }

    #[derive(Serialize)]
    struct InputView {
        name: String,
        value: String,
        from: String,
    }
    let inputs: Vec<InputView> = layered
        .into_iter()
        .map(|(name, (value, from))| InputView { name, value, from })
        .collect();

    if args.json {
        #[derive(Serialize)]
        struct Full<'a> {
            #[serde(flatten)]
            profile: ProfileView<'a>,
            inputs: Vec<InputView>,
            sensitive_inputs: &'a [String],
        }
        return print_json(&Full {
            profile: ProfileView::new(entry),
            inputs,
            sensitive_inputs: &profile.sensitive_inputs,
        });
    }
    let mut out = String::new();
    out.push_str(&format!("id:          {}\n", profile.id));
    out.push_str(&format!("description: {}\n", profile.description));
    out.push_str(&format!("source:      {}\n", profile.source));
    for shadowed in &entry.shadowed {
        out.push_str(&format!("shadows:     {shadowed}\n"));
    }
    out.push_str(&format!(
        "extension:   {} ({})\n",
        extension.id(),
        extension.summary()
    ));
    out.push_str(&format!("ttl:         {}\n", profile.ttl));
    let limit = profile
        .placement
        .max_concurrent
        .map(|max| format!(", max_concurrent = {max}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "placement:   host = {}{limit}\n",
        profile.placement.host
    ));
    let on_failure = match profile.on_failure {
        OnFailure::Cleanup => "cleanup",
        OnFailure::Keep => "keep",
    };
    out.push_str(&format!("on_failure:  {on_failure}\n"));
    out.push_str("inputs:\n");
    let width = inputs
        .iter()
        .map(|input| input.name.len() + input.value.len() + 5)
        .max()
        .unwrap_or(0);
    for input in &inputs {
        let assignment = format!("{} = {:?}", input.name, input.value);
        out.push_str(&format!("  {assignment:<width$}  # {}\n", input.from));
    }
    if !profile.sensitive_inputs.is_empty() {
        out.push_str(&format!(
            "sensitive:   {}\n",
            profile.sensitive_inputs.join(", ")
        ));
    }
    out.push_str(&format!(
        "{} accepts:\n{}",
        extension.id(),
        extension.input_schema().describe()
    ));
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
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
