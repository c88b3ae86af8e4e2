//! History: which sandboxes are live and which have ended, listing them with filters, purging
//! torn-down sandboxes' records once their retention has passed, and reading a past sandbox's
//! provenance back (`show --provenance`, `create --like`), from its record or, once purged, from
//! the `provenance.json` beside its kept artifacts.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use crate::duration::{Age, parse_secs};
use crate::inputs::{Layer, Origin, REDACTED, Setting, Value};
use crate::lifecycle::{Config, reconcile};
use crate::provenance::{BuildProvenance, Document};
use crate::record::{Record, State};
use crate::registry::{Listing, RecordHead, Registry};

/// How long a torn-down sandbox's record is kept when neither its profile nor the user config
/// file say otherwise.
pub const DEFAULT_RETENTION: Age = Age::from_secs(30 * 24 * 3600);

/// Whether a sandbox still has a life: in progress, ready, or failed/cancelled but still holding
/// working files (a kept failure). Torn-down and expired sandboxes, and failures that left
/// nothing behind but their log, have ended.
pub fn is_live(registry: &Registry, id: &str, state: State) -> bool {
    match state {
        State::Pending | State::Provisioning | State::Ready => true,
        State::Failed | State::Cancelled => registry.holds_files(id),
        State::TornDown | State::Expired => false,
    }
}

/// A point in time given as "that long ago" or as a date or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(SignedDuration),
    At(Timestamp),
}

impl Since {
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            Since::Ago(duration) => now.checked_sub(duration).unwrap_or(Timestamp::MIN),
            Since::At(at) => at,
        }
    }
}

impl FromStr for Since {
    type Err = String;

    /// `2d`, `12h`, `1h30m` (that long ago), `2024-05-01` (midnight UTC) or an RFC 3339 time
    /// (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.starts_with(|c: char| c.is_ascii_digit())
            && let Ok(secs) = parse_secs(text, "--since")
        {
            return Ok(Since::Ago(SignedDuration::from_secs(secs)));
        }
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(Since::At(at));
        }
        if let Ok(date) = text.parse::<jiff::civil::Date>()
            && let Ok(at) = jiff::tz::TimeZone::UTC
                .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        {
            return Ok(Since::At(at));
        }
        Err(format!(
            "invalid --since {text:?}: write how long ago (\"2d\", \"12h\", \"1h30m\"), a date (\"2024-05-01\", midnight UTC) or a time (\"2024-05-01T12:00:00Z\")"
        ))
    }
}

/// What `list` shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Ended sandboxes too, not only live ones.
    pub all: bool,
    /// Only these states (any of them); naming states looks at ended sandboxes too.
    pub states: Vec<State>,
    /// Only these profiles (any of them); `profile.` may be left out.
    pub profiles: Vec<String>,
    /// Only these modes (any of them).
    pub modes: Vec<String>,
    /// Only sandboxes created at or after this time.
    pub since: Option<Timestamp>,
    /// Only sandboxes past their TTL that are not torn down yet (looks at ended ones too).
    pub expired_only: bool,
}

impl ListFilter {
    /// Whether ended sandboxes are in view.
    fn includes_ended(&self) -> bool {
        self.all || !self.states.is_empty() || self.expired_only
    }

    /// `--all` and nothing else: every record is wanted, so none is worth a first look.
    fn selects_everything(&self) -> bool {
        self.all
            && self.states.is_empty()
            && self.profiles.is_empty()
            && self.modes.is_empty()
            && self.since.is_none()
            && !self.expired_only
    }

    fn wants_profile(&self, profile: &str) -> bool {
        self.profiles.is_empty()
            || self.profiles.iter().any(|wanted| {
                profile == wanted || profile.strip_prefix("profile.") == Some(wanted.as_str())
            })
    }

    /// The cheap test, on the head of a stored record. Conservative: a sandbox whose record
    /// says it is in progress may turn out orphaned (failed) once reconciled, so its state is
    /// judged again on the whole record.
    fn may_want(&self, registry: &Registry, head: &RecordHead) -> bool {
        let in_progress = head.state.is_in_progress();
        self.wants_profile(&head.profile)
            && (self.modes.is_empty() || self.modes.contains(&head.mode))
            && self.since.is_none_or(|since| head.created_at >= since)
            && (self.states.is_empty() || in_progress || self.states.contains(&head.state))
            && (!self.expired_only || !head.state.is_gone())
            && (self.includes_ended() || in_progress || is_live(registry, &head.id, head.state))
    }

    /// The full test, on a reconciled record.
    fn wants(&self, registry: &Registry, record: &Record, now: Timestamp) -> bool {
        (self.states.is_empty() || self.states.contains(&record.state))
            && (!self.expired_only || crate::lifecycle::is_expired(record, now))
            && (self.includes_ended() || is_live(registry, &record.id, record.state))
    }
}

/// The sandboxes `filter` selects, reconciled, newest first (ids sort by creation time, and
/// are unique, so the order is total and stable). Records the filter rules out are skipped
/// after reading only their head.
pub fn list(config: &Config, filter: &ListFilter) -> anyhow::Result<Listing> {
    let registry = &config.registry;
    let now = Timestamp::now();
    let scanned = if filter.selects_everything() {
        registry.list()?
    } else {
        registry.scan(|head| filter.may_want(registry, head))?
    };
    let mut listing = Listing {
        records: Vec::new(),
        unreadable: scanned.unreadable,
    };
    for record in scanned.records {
        let id = record.id.clone();
        match reconcile(registry, record) {
            Ok(record) if filter.wants(registry, &record, now) => listing.records.push(record),
            Ok(_) => {}
            Err(err) => listing.unreadable.push((id, err)),
        }
    }
    listing.records.reverse();
    Ok(listing)
}

/// How long `record` is kept once torn down: its profile's `retention`, else the settings'.
pub fn retention_of(record: &Record, default: Age) -> Age {
    record.retention.unwrap_or(default)
}

/// When a torn-down sandbox's record is due to be purged; `None` while it is not torn down.
/// Retention counts from the teardown (records from before sandboxer kept history: from their
/// last update).
pub fn purge_due_at(record: &Record, default_retention: Age) -> Option<Timestamp> {
    if !record.state.is_gone() {
        return None;
    }
    let since = record.torn_down_at.unwrap_or(record.updated_at);
    Some(
        since
            .checked_add(retention_of(record, default_retention).as_duration())
            .unwrap_or(Timestamp::MAX),
    )
}

/// Purges one torn-down sandbox's record, if it is still due (checked again under its owner
/// lock): its kept artifacts' provenance is brought up to date next to them first. `Ok(false)`
/// when another process holds the sandbox, or it is gone already.
pub fn purge(config: &Config, id: &str, now: Timestamp) -> anyhow::Result<bool> {
    let registry = &config.registry;
    let Some(Some(_owner)) = registry.try_lock_existing(id)? else {
        return Ok(false);
    };
    let record = registry.load_exact(id)?;
    if purge_due_at(&record, config.retention).is_none_or(|due| due > now) {
        return Ok(false);
    }
    crate::artifacts::before_purge(registry, &record)?;
    registry.purge(id)?;
    Ok(true)
}

/// The provenance document of a sandbox (`show --provenance`): from its record, reconciled,
/// or once the record is purged, from the `provenance.json` next to its kept artifacts.
pub fn provenance(config: &Config, id_or_prefix: &str) -> anyhow::Result<Document> {
    match crate::lifecycle::show(config, id_or_prefix) {
        Ok(record) => Ok(Document::of(&record)),
        Err(err) => match config.registry.purged_with_kept_artifacts(id_or_prefix) {
            Some(dir) => Document::read(&dir.join(crate::provenance::FILE_NAME)),
            None => Err(err),
        },
    }
}

/// What `create --like ID` takes from a past sandbox: its profile, its inputs (file inputs
/// made absolute), and what made its build, to compare the new one against.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The sandbox replayed.
    pub id: String,
    pub profile: String,
    /// The recorded inputs, as a layer between the profile and the command line; secret ones
    /// are not in it (they were never recorded).
    pub layer: Layer,
    /// Inputs recorded as `<redacted>`: they must come again from `--input` (or the profile).
    pub secrets: Vec<String>,
    pub provenance: Option<BuildProvenance>,
}

/// Reads what `create --like` replays: the record of `id_or_prefix`, or, once the record is
/// purged, the `provenance.json` kept next to its artifacts.
pub fn replay(registry: &Registry, id_or_prefix: &str) -> anyhow::Result<Replay> {
    let document = match registry.load(id_or_prefix) {
        Ok(record) => Document::of(&record),
        Err(err) => match registry.purged_with_kept_artifacts(id_or_prefix) {
            Some(dir) => Document::read(&dir.join(crate::provenance::FILE_NAME))?,
            None => return Err(err),
        },
    };
    let id = document.sandbox.id.clone();
    let mut layer = Layer::default();
    let mut secrets = Vec::new();
    for (name, value) in &document.inputs {
        let value = document.build.input_paths.get(name).unwrap_or(value);
        let origin = || Origin::Like(id.clone());
        match value {
            Value::Single(text) if text == REDACTED => secrets.push(name.clone()),
            Value::List(items) if items.iter().any(|item| item == REDACTED) => {
                secrets.push(name.clone());
            }
            Value::Single(text) => layer.0.push(Setting::new(name, text, origin())),
            // An empty value starts the list afresh, so an empty recorded list stays empty.
            Value::List(items) if items.is_empty() => {
                layer.0.push(Setting::new(name, "", origin()));
            }
            Value::List(items) => {
                for item in items {
                    layer.0.push(Setting::new(name, item, origin()));
                }
            }
        }
    }
    Ok(Replay {
        profile: document.sandbox.profile.clone(),
        provenance: (document.build != BuildProvenance::default()).then_some(document.build),
        id,
        layer,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_dates_and_times() {
        let now: Timestamp = "2024-05-10T00:00:00Z".parse().unwrap();
        let ago: Since = "2d".parse().unwrap();
        assert_eq!(ago.resolve(now).to_string(), "2024-05-08T00:00:00Z");
        let date: Since = "2024-05-01".parse().unwrap();
        assert_eq!(date.resolve(now).to_string(), "2024-05-01T00:00:00Z");
        let time: Since = "2024-05-01T14:00:00+02:00".parse().unwrap();
        assert_eq!(time.resolve(now).to_string(), "2024-05-01T12:00:00Z");
        for bad in ["", "yesterday", "2d3", "2024-13-01", "-2d"] {
            let err = bad.parse::<Since>().unwrap_err();
            assert!(err.starts_with("invalid --since"), "{bad}: {err}");
        }
    }
}
