//! The command line's shape: clap types only, turned into library requests by `cli`.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCompleter;

use crate::duration::{self, Age, Ttl};
use crate::ext::OnFailure;
use crate::history::Since;
use crate::inputs::{Assignment, parse_assignment};
use crate::record::State;

use super::complete;

pub(super) const EXIT_CODES: &str = "\
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
pub(super) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(super) struct GlobalArgs {
    /// State directory [default: $XDG_STATE_HOME/sandboxer or ~/.local/state/sandboxer]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "SANDBOXER_HOME",
        hide_env_values = true
    )]
    pub state_dir: Option<Utf8PathBuf>,

    /// Search DIR for profiles first (repeatable); then $SANDBOXER_PROFILES, ./profiles,
    /// $XDG_CONFIG_HOME/sandboxer/profiles and the built-in profiles
    #[arg(long = "profiles-dir", global = true, value_name = "DIR")]
    pub profiles_dirs: Vec<Utf8PathBuf>,

    /// Say more about what is decided along the way (e.g. which checks an extension skipped, whether State Hub is on)
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

/// One example per command, shown at the end of its `--help` (and in its man page). Every
/// command has one: a test says so.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "create",
        "sandboxer create --profile vm-packer-build --input vm_name=web-1 --ttl 4h",
    ),
    (
        "list",
        "sandboxer list --state failed,cancelled --since 2d --json",
    ),
    ("show", "sandboxer show sb-1m8d --json"),
    (
        "teardown",
        "sandboxer teardown sb-1m8dd81vpxjrh sb-1m8dd8a8wr5n2",
    ),
    ("extend", "sandboxer extend sb-1m8d --ttl 1d"),
    ("ssh", "sandboxer ssh sb-1m8d -- uname -a"),
    ("gc", "sandboxer gc --dry-run"),
    ("profiles", "sandboxer profiles list"),
    ("profiles list", "sandboxer profiles list --json"),
    ("profiles show", "sandboxer profiles show vm-haskell-build"),
    ("artifacts", "sandboxer artifacts list"),
    ("artifacts list", "sandboxer artifacts list --json"),
    (
        "artifacts prune",
        "sandboxer artifacts prune --keep-last 3 --max-total 500G --dry-run",
    ),
    ("logs", "sandboxer logs sb-1m8d --follow"),
    ("doctor", "sandboxer doctor --json"),
    ("hosts", "sandboxer hosts --json"),
    (
        "completions",
        "sandboxer completions bash > ~/.local/share/bash-completion/completions/sandboxer",
    ),
    ("hub", "sandboxer hub status"),
    ("hub status", "sandboxer hub status --json"),
    ("hub flush", "sandboxer hub flush"),
    ("shim", "sandboxer shim check --dest infra/build-machines"),
    (
        "shim install",
        "sandboxer shim install --dest infra/build-machines --edit-makefile",
    ),
    (
        "shim check",
        "sandboxer shim check --dest infra/build-machines --json",
    ),
];

/// Appends each command's example to its help.
pub(super) fn with_examples(mut command: clap::Command) -> clap::Command {
    for (path, example) in EXAMPLES {
        let names: Vec<&str> = path.split(' ').collect();
        command = add_example(command, &names, example);
    }
    command
}

fn add_example(command: clap::Command, names: &[&str], example: &str) -> clap::Command {
    let Some((first, rest)) = names.split_first() else {
        let text = match command.get_after_help() {
            Some(help) => format!("{help}\n\nExample:\n  $ {example}"),
            None => format!("Example:\n  $ {example}"),
        };
        return command.after_help(text);
    };
    let rest = rest.to_vec();
    command.mut_subcommand(*first, move |sub| add_example(sub, &rest, example))
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Create a sandbox from a profile and provision it
    #[command(
        after_help = "Inputs resolve as: extension defaults < the profile's [inputs] < --input.\n`--input mode=attach|build` overrides the profile's mode (ext.vm-packer: attach when none is named).\n`--input placement_host=NAME` places on that host of the pool (`sandboxer hosts` lists them).\nOn success the sandbox id is printed on stdout (the record with --json)."
    )]
    Create(CreateArgs),
    /// List live sandboxes (newest first), with the time each has left; --all adds ended ones
    #[command(
        after_help = "Live: pending, provisioning, ready, and failed or cancelled ones that still hold working files.\nEnded: torn down, expired, and failures that left only their log.\nFilters combine (a sandbox must match each); a filter given several values matches any of them.\n--state and --expired look at ended sandboxes too."
    )]
    List(ListArgs),
    /// Show one sandbox's record
    #[command(
        after_help = "--provenance prints what made the sandbox's artifacts: the template and its digest, the var\nfiles' digests, Packer's version, the builds that ran, the -var values passed (secrets as\n<redacted>) and the artifacts' hashes. With --json it is the stable document docs/history.md\ndescribes, the same as the provenance.json beside kept artifacts, where it is found once the\nrecord is purged."
    )]
    Show(ShowArgs),
    /// Tear sandboxes down (attach: detach only; build: keep the OVA); safe to repeat
    #[command(
        after_help = "Every sandbox named is attempted, whatever happens to the others; the exit code is 1 if any failed."
    )]
    Teardown(TeardownArgs),
    /// Push a live sandbox's expiry to DURATION from now
    Extend(ExtendArgs),
    /// Open a shell on a ready sandbox over SSH, or run a command there
    #[command(after_help = SSH_HELP)]
    Ssh(SshArgs),
    /// Tear down every expired sandbox, stop builds whose sandboxer died, purge old records
    #[command(
        after_help = "Expired sandboxes are torn down (attach mode only detaches; build mode keeps its OVA) and marked `expired`.\nA sandbox still provisioning is never reaped mid-build; a later gc reaps it once it finishes.\nA torn-down sandbox's record is purged once its retention has passed (the profile's `retention`,\nelse `[history] retention` in $XDG_CONFIG_HOME/sandboxer/config.toml, else 30d); its kept\nartifacts stay, with their provenance.json next to them. gc also finishes interrupted prunes.\nEvery sandbox is attempted, whatever happens to the others; the exit code is 1 if any failed."
    )]
    Gc(GcArgs),
    /// Inspect profiles
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// List and prune kept artifacts (the OVAs torn-down builds keep)
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// Print a sandbox's provision log (redacted); --follow streams it while it provisions
    Logs(LogsArgs),
    /// Show the pool's hosts: reachability, Packer version, running builds, free slots
    #[command(after_help = HOSTS_HELP)]
    Hosts(JsonArg),
    /// Check this machine and configuration: tools, state dir, profiles, sandboxes awaiting gc
    #[command(
        after_help = "One line per check: ok, warn or fail, and the fix. Changes nothing (State Hub is only
connected to, never sent anything; the port registry, when $SANDBOXER_PORT_REGISTRY names
one, is only read).\nExit code 0 when nothing fails (warnings included), 1 otherwise."
    )]
    Doctor(DoctorArgs),
    /// Print the script that registers shell completions (profile names and sandbox ids too)
    #[command(
        after_help = "Install it where your shell looks, for example:\n  sandboxer completions bash > ~/.local/share/bash-completion/completions/sandboxer\n  sandboxer completions zsh > ~/.zfunc/_sandboxer\n  sandboxer completions fish > ~/.config/fish/completions/sandboxer.fish\n`make install` installs all three."
    )]
    Completions(CompletionsArgs),
    /// State Hub delivery: what waits in the spool, and sending it
    #[command(subcommand, after_help = HUB_HELP)]
    Hub(HubCommand),
    /// Install or check the-custodian's `make remote-build` shim
    #[command(subcommand)]
    Shim(ShimCommand),
}

pub(super) const HUB_HELP: &str = "\
State Hub is configured by STATE_HUB_URL (or `url` in the [state_hub] table of
$XDG_CONFIG_HOME/sandboxer/config.toml) and STATE_HUB_TOKEN (or STATE_HUB_TOKEN_FILE).
Events a create could not deliver wait in the spool in the state directory.";

#[derive(Debug, Subcommand)]
pub(super) enum HubCommand {
    /// Show the State Hub URL, the events waiting per sandbox, and the last delivery error
    Status(JsonArg),
    /// Send every waiting event, in order, and empty the spool
    Flush(JsonArg),
}

/// How `create` reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ProgressFormat {
    Human,
    Jsonl,
}

#[derive(Debug, Args)]
pub(super) struct CreateArgs {
    /// Profile id (e.g. profile.vm-packer-build; the `profile.` prefix may be left out)
    #[arg(long, value_name = "NAME", required_unless_present = "like", add = ArgValueCompleter::new(complete::profiles))]
    pub profile: Option<String>,
    /// Build again like sandbox ID: its profile and inputs (secret inputs must be given again
    /// with --input; --input overrides any recorded value); warns when the template or Packer
    /// changed since
    #[arg(long, value_name = "ID", conflicts_with = "profile", add = ArgValueCompleter::new(complete::sandbox_ids))]
    pub like: Option<String>,
    /// Set an input, overriding the profile's (repeatable); a list input collects every
    /// KEY=VALUE given, replacing the profile's list, and KEY+=VALUE adds to the profile's list
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE", value_parser = parse_assignment)]
    pub inputs: Vec<Assignment>,
    /// Time to live, overriding the profile's (e.g. 45m, 12h, 2d)
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<Ttl>,
    /// What a failed build leaves: `cleanup` removes working files and keeps the log, `keep`
    /// keeps everything for debugging [default: the profile's `on_failure`, else cleanup]
    #[arg(long, value_name = "POLICY")]
    pub on_failure: Option<OnFailure>,
    /// Fail (exit 4) instead of queueing when the placement host is at `max_concurrent`
    #[arg(long)]
    pub no_wait: bool,
    /// Create even while a live sandbox holds the same VM (attach mode: the same vm_name)
    #[arg(long)]
    pub force: bool,
    /// After Ctrl-C or SIGTERM, how long the build may take to cancel before it is killed
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = cancel_timeout)]
    pub cancel_timeout: std::time::Duration,
    /// Print the final record (or an error object) as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// `human`: a live status line on a terminal, timestamped lines elsewhere (on stderr);
    /// `jsonl`: also each event as a CloudEvents JSON line on stdout, instead of the id
    #[arg(long, value_name = "FORMAT", default_value = "human")]
    pub progress: ProgressFormat,
    /// Publish a heartbeat when the build has been silent this long (0: never)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = heartbeat)]
    pub heartbeat: std::time::Duration,
    /// Print only errors and the result: no progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
}

fn heartbeat(text: &str) -> Result<std::time::Duration, String> {
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    duration::parse_std(text, "heartbeat interval")
}

fn cancel_timeout(text: &str) -> Result<std::time::Duration, String> {
    duration::parse_std(text, "cancel timeout")
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    /// Ended sandboxes too (torn down, expired, failures that left only their log)
    #[arg(long, short)]
    pub all: bool,
    /// Only sandboxes in STATE: pending, provisioning, ready, failed, cancelled, torn-down,
    /// expired (repeatable, or comma-separated)
    #[arg(long = "state", value_name = "STATE", value_delimiter = ',')]
    pub states: Vec<State>,
    /// Only sandboxes made from profile NAME (the `profile.` prefix may be left out; repeatable)
    #[arg(long = "profile", value_name = "NAME", value_delimiter = ',', add = ArgValueCompleter::new(complete::profiles))]
    pub profiles: Vec<String>,
    /// Only sandboxes in MODE, e.g. build or attach (repeatable)
    #[arg(long = "mode", value_name = "MODE", value_delimiter = ',')]
    pub modes: Vec<String>,
    /// Only sandboxes created since then: how long ago (2d, 12h) or a date or time (2024-05-01,
    /// 2024-05-01T12:00:00Z)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<Since>,
    /// Only sandboxes past their TTL that are not torn down yet
    #[arg(long)]
    pub expired: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum ArtifactsCommand {
    /// List kept artifacts with their size, age, sandbox and profile, and the total
    #[command(
        after_help = "Every artifact file in the state directory: live sandboxes' (never pruned) and torn-down ones' kept under artifacts/<id>/, each next to its provenance.json."
    )]
    List(JsonArg),
    /// Delete kept artifacts by count, age or total size; never one of a live sandbox
    #[command(
        after_help = "--keep-last protects each profile's newest N sandboxes' artifacts (live ones count).\n--older-than and --max-total choose what goes, oldest first; --keep-last alone prunes everything it does not protect.\nThe records keep the pruned artifacts' hashes as history. Each artifact is attempted whatever happens to the others; the exit code is 1 if any failed."
    )]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub(super) struct PruneArgs {
    /// Keep the artifacts of each profile's newest N sandboxes
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Prune artifacts of sandboxes created longer ago than DURATION (e.g. 30d, 12w)
    #[arg(long, value_name = "DURATION", value_parser = older_than)]
    pub older_than: Option<Age>,
    /// Prune the oldest artifacts until all kept ones together take at most SIZE (e.g. 200G,
    /// 1.5TiB; K, M, G, T are powers of 1024, KB, MB, GB, TB of 1000)
    #[arg(long, value_name = "SIZE", value_parser = max_total)]
    pub max_total: Option<u64>,
    /// Only say what would be pruned
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

fn older_than(text: &str) -> Result<Age, String> {
    Age::parse(text, "--older-than")
}

fn max_total(text: &str) -> Result<u64, String> {
    crate::size::parse(text, "--max-total")
}

#[derive(Debug, Args)]
pub(super) struct ExtendArgs {
    /// Sandbox id, or a unique prefix of one
    #[arg(add = ArgValueCompleter::new(complete::sandbox_ids))]
    pub id: String,
    /// New time to live, counted from now (e.g. 4h); never shortens the current one
    #[arg(long, value_name = "DURATION")]
    pub ttl: Ttl,
    /// Print the updated record as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct GcArgs {
    /// Only say what would be done
    #[arg(long)]
    pub dry_run: bool,
    /// Print the actions as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct JsonArg {
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    /// Sandbox id, or a unique prefix of one
    #[arg(add = ArgValueCompleter::new(complete::sandbox_ids))]
    pub id: String,
    /// Show what made its artifacts, not the whole record
    #[arg(long)]
    pub provenance: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

const HOSTS_HELP: &str = "\
The pool file is $SANDBOXER_HOSTS, else $XDG_CONFIG_HOME/sandboxer/hosts.toml (without one, this
machine alone, as `local`). Every host is asked at once, over SSH with sandboxer's options and
known_hosts file; asking takes no slot. Running builds on a build host count every control
machine's; on `local`, this machine's.
Exit code 0 whether or not every host answers.";

const SSH_HELP: &str = "\
Each word after `--` reaches the remote command as it is: sandboxer quotes every word for the
remote shell, so nothing in it is expanded or split there.
Stdin, stdout and stderr are passed through; the exit code is the remote command's (255: ssh
itself failed).
ssh runs with no configuration file, sandboxer's known_hosts file ($SANDBOXER_HOME/ssh/known_hosts,
StrictHostKeyChecking=accept-new: a changed host key is refused), and the user and key recorded
when the sandbox was made.";

#[derive(Debug, Args)]
pub(super) struct SshArgs {
    /// Sandbox id, or a unique prefix of one
    #[arg(add = ArgValueCompleter::new(complete::sandbox_ids))]
    pub id: String,
    /// The command to run, after `--`; without one, a login shell
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct TeardownArgs {
    /// Sandbox ids, or unique prefixes of them
    #[arg(required = true, value_name = "ID", add = ArgValueCompleter::new(complete::sandbox_ids))]
    pub ids: Vec<String>,
    /// Print JSON on stdout: the record of one sandbox, or an array of outcomes for several
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum ProfilesCommand {
    /// List every profile and where it comes from
    List(JsonArg),
    /// Show a profile's values, the extension's defaults, and where each comes from
    Show(ProfileShowArgs),
}

#[derive(Debug, Args)]
pub(super) struct ProfileShowArgs {
    /// Profile id (the `profile.` prefix may be left out)
    #[arg(add = ArgValueCompleter::new(complete::profiles))]
    pub name: String,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct DoctorArgs {
    /// Also check that the remote-build shim installed in DIR is current (as `shim check`)
    #[arg(long, value_name = "DIR")]
    pub shim_dest: Option<Utf8PathBuf>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    /// Sandbox id, or a unique prefix of one
    #[arg(add = ArgValueCompleter::new(complete::sandbox_ids))]
    pub id: String,
    /// Keep printing what the build writes until the sandbox stops provisioning
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub(super) struct CompletionsArgs {
    /// The shell to register with
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub(super) enum ShimCommand {
    /// Write remote-build.mk and remote-build.sh into DIR (the-custodian's infra/build-machines)
    #[command(
        after_help = "Each file is written atomically; nothing else is created.\nA file edited by hand since sandboxer generated it is not overwritten: install names it,\nshows a unified diff and exits 1, unless --force.\nThe line DIR's Makefile needs is printed on stdout, unless the Makefile has it already\n(or --edit-makefile adds it)."
    )]
    Install(ShimInstallArgs),
    /// Compare the shim in DIR with what this sandboxer writes
    #[command(
        after_help = "Exits 1 when a file is missing, edited by hand, from another sandboxer version, or not\nexecutable, naming each difference (with a unified diff for changed files)."
    )]
    Check(ShimCheckArgs),
}

#[derive(Debug, Args)]
pub(super) struct ShimInstallArgs {
    /// The directory whose Makefile gets `make remote-build` (the-custodian's infra/build-machines)
    #[arg(long, value_name = "DIR")]
    pub dest: Utf8PathBuf,
    /// Overwrite files edited by hand (the edits are lost)
    #[arg(long)]
    pub force: bool,
    /// Add `include remote-build.mk` to DIR's Makefile unless it has it; every other byte stays
    #[arg(long)]
    pub edit_makefile: bool,
    /// Print what was done as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ShimCheckArgs {
    /// The directory the shim was installed into
    #[arg(long, value_name = "DIR")]
    pub dest: Utf8PathBuf,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Whether the command was asked for JSON, so errors are printed as JSON too.
    pub(super) fn json(&self) -> bool {
        match self {
            Command::Create(args) => args.json,
            Command::List(args) => args.json,
            Command::Show(args) => args.json,
            Command::Teardown(args) => args.json,
            Command::Extend(args) => args.json,
            Command::Ssh(_) => false,
            Command::Gc(args) => args.json,
            Command::Profiles(ProfilesCommand::List(args)) => args.json,
            Command::Profiles(ProfilesCommand::Show(args)) => args.json,
            Command::Artifacts(ArtifactsCommand::List(args)) => args.json,
            Command::Artifacts(ArtifactsCommand::Prune(args)) => args.json,
            Command::Doctor(args) => args.json,
            Command::Hosts(args) => args.json,
            Command::Logs(_) | Command::Completions(_) => false,
            Command::Hub(HubCommand::Status(args) | HubCommand::Flush(args)) => args.json,
            Command::Shim(ShimCommand::Install(args)) => args.json,
            Command::Shim(ShimCommand::Check(args)) => args.json,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every command and subcommand ends its help with an example.
    #[test]
    fn every_command_has_an_example() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let path = format!("{path} {}", sub.get_name()).trim().to_owned();
                let has = sub
                    .get_after_help()
                    .is_some_and(|help| help.to_string().contains("Example:\n  $ sandboxer"));
                if !has {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::super::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "add an example to EXAMPLES in cli/args.rs for: {missing:?}"
        );
    }
}
