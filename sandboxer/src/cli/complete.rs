//! Shell completion: the registration scripts `sandboxer completions SHELL` prints, and the
//! dynamic candidates (profile names, sandbox ids) the shell asks the binary for as you type.
//!
//! The scripts call back into `sandboxer` with `SANDBOXER_COMPLETE=<shell>` set, so completions
//! always match the installed version and see the profiles and sandboxes of the moment.

use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use super::args::Shell;
use crate::profile::Catalog;

/// The environment variable that turns a `sandboxer` run into a completion request.
pub(super) const VAR: &str = "SANDBOXER_COMPLETE";

/// Answers a completion request if this run is one (and exits); otherwise returns.
pub(super) fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(super::command)
        .var(VAR)
        .complete();
}

/// The script that registers `sandboxer`'s completions with `shell`.
pub(super) fn registration(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    completer.write_registration(VAR, "sandboxer", "sandboxer", "sandboxer", out)
}

/// Profile ids (and their short forms) visible through the default search path.
pub(super) fn profiles(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let Ok(search) = super::search_path(&[]) else {
        return Vec::new();
    };
    let Ok(catalog) = Catalog::load(&search) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for entry in catalog.entries() {
        let id = entry.profile.id.as_str();
        let short = id.strip_prefix("profile.").unwrap_or(id);
        for name in [id, short] {
            if name.starts_with(current) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// Ids of the sandboxes in the state directory, read without creating or changing anything.
pub(super) fn sandbox_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let Ok(Some(state_dir)) = super::state_dir(None) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(state_dir.join("sandboxes")) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.') && name.starts_with(current))
        .collect();
    ids.sort();
    ids.into_iter().map(CompletionCandidate::new).collect()
}
