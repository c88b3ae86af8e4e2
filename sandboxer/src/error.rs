//! Errors whose kind decides the process exit code, and the codes themselves.

use std::fmt;

/// What went wrong, as far as the exit code and a script reading `--json` care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operation ran and failed (a Packer build failed, a file could not be written).
    Failed,
    /// The user asked for something invalid: bad flags, bad profile, bad input.
    Usage,
    /// A sandbox or profile that does not exist.
    NotFound,
    /// Every placement slot is taken and the caller asked not to wait.
    PlacementFull,
    /// Cancelled by SIGINT.
    Interrupted,
    /// Cancelled by SIGTERM (or SIGHUP).
    Terminated,
}

impl ErrorKind {
    /// The process exit code; documented in the README and pinned by transcripts.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::PlacementFull => 4,
            ErrorKind::Interrupted => 130,
            ErrorKind::Terminated => 143,
        }
    }

    /// The stable machine name used in JSON error objects.
    pub fn slug(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not-found",
            ErrorKind::PlacementFull => "placement-full",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Terminated => "terminated",
        }
    }
}

/// An error that carries its [`ErrorKind`]; anything else counts as [`ErrorKind::Failed`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The command's `--json` output already accounts for this failure (a report with one
    /// outcome per sandbox), so no separate JSON error object is printed.
    in_report: bool,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            in_report: false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A usage or input error (exit code 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Error::new(ErrorKind::Usage, message).into()
}

/// A not-found error (exit code 3).
pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    Error::new(ErrorKind::NotFound, message).into()
}

/// Some of a command's operations failed, and its report (printed already, JSON included)
/// says which (exit code 1).
pub fn partly_failed(message: impl Into<String>) -> anyhow::Error {
    Error {
        in_report: true,
        ..Error::new(ErrorKind::Failed, message)
    }
    .into()
}

/// Whether the command's own `--json` output already describes this failure.
pub fn is_in_report(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<Error>())
        .any(|error| error.in_report)
}

/// The kind of the first typed error in the chain; untyped errors are failures.
pub fn kind_of(err: &anyhow::Error) -> ErrorKind {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .map_or(ErrorKind::Failed, Error::kind)
}

/// "did you mean `x`?" for the closest candidate, if one is close enough to be a typo.
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(given, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// How many names an error lists in full before it lists only the closest.
const LISTED_IN_FULL: usize = 5;

/// How many of the closest names an error lists when there are too many to list them all.
const CLOSEST: usize = 3;

/// The names to show beside an unknown `given` one, for an error that stays readable however
/// many there are: all of them when there are few (`"declared: a, b, c"`), else the three
/// closest and a count of the rest, with `where_listed` saying where to see them all
/// (`"closest declared: a, b, c; 136 more (`packer inspect T` lists them all)"`).
pub fn some_candidates<'a>(
    given: &str,
    label: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    where_listed: &str,
) -> String {
    some_candidates_by(given, label, candidates, |name| name, where_listed)
}

/// [`some_candidates`], comparing `given` with `key(candidate)` (a profile id without its
/// `profile.` prefix, which every id shares).
pub fn some_candidates_by<'a>(
    given: &str,
    label: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    key: impl Fn(&'a str) -> &'a str,
    where_listed: &str,
) -> String {
    let mut names: Vec<&str> = candidates.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return format!("{label}: none");
    }
    if names.len() <= LISTED_IN_FULL {
        return format!("{label}: {}", names.join(", "));
    }
    let mut ranked: Vec<(f64, &str)> = names
        .iter()
        .map(|name| (strsim::jaro_winkler(given, key(name)), *name))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let closest: Vec<&str> = ranked.iter().take(CLOSEST).map(|(_, name)| *name).collect();
    format!(
        "closest {label}: {}; {} more ({where_listed} lists them all)",
        closest.join(", "),
        names.len() - closest.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_keep_their_kind_through_context() {
        let err = not_found("no sandbox sb-1").context("showing sandbox");
        assert_eq!(kind_of(&err), ErrorKind::NotFound);
        assert_eq!(kind_of(&anyhow::anyhow!("boom")), ErrorKind::Failed);
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("ttll", ["id", "ttl", "inputs"]), Some("ttl"));
        assert_eq!(did_you_mean("zzz", ["id", "ttl", "inputs"]), None);
    }

    #[test]
    fn few_candidates_are_listed_many_are_summarised() {
        assert_eq!(
            some_candidates("x", "declared", ["b", "a", "c"], "`p`"),
            "declared: a, b, c"
        );
        let many: Vec<String> = (0..139).map(|i| format!("var_{i:03}")).collect();
        let names = many
            .iter()
            .map(String::as_str)
            .chain(["disk_size", "disk_type", "dsk"]);
        assert_eq!(
            some_candidates("disk_sise", "declared", names, "`packer inspect t`"),
            "closest declared: disk_size, disk_type, dsk; 139 more (`packer inspect t` lists them all)"
        );
        assert_eq!(
            some_candidates("x", "declared", [], "`p`"),
            "declared: none"
        );
    }
}
