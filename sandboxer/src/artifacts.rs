//! Kept artifacts: what is on disk and who made it, the provenance file next to each kept one,
//! pruning by age, count and total size, and finishing a prune that was interrupted.
//!
//! Crash safety rests on one order: a file is always described before it appears and until it
//! is gone. A prune first moves the artifact's entry to `pruned_artifacts` (in the record, or in
//! `provenance.json` once the record is purged), then deletes the file; killed in between, it
//! leaves a file described as being pruned, which the next `gc` deletes. No record ever lists a
//! file that is missing, and no file is left that nothing describes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::Serialize;

use crate::duration::Age;
use crate::files::{FileLock, sync_dir};
use crate::history::{self, ListFilter};
use crate::lifecycle::{Config, Outcome};
use crate::provenance::{self, Document};
use crate::record::{Artifact, PrunedArtifact, Record, State};
use crate::registry::Registry;

/// One artifact file on disk, and the sandbox that made it.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub sandbox: String,
    pub profile: String,
    /// The sandbox's state (as its provenance file last saw it, once the record is purged).
    pub state: State,
    /// Whether the sandbox is live: its artifacts are never pruned.
    pub live: bool,
    /// Whether the sandbox's record still exists; when not, `provenance.json` next to the file
    /// is what describes it.
    pub recorded: bool,
    pub created_at: Timestamp,
    pub path: Utf8PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// Every artifact sandboxer keeps in the state directory, newest sandbox first, and anything
/// about them that is out of order.
#[derive(Debug, Default)]
pub struct Inventory {
    pub artifacts: Vec<Kept>,
    /// Files under `artifacts/` that no record or provenance file describes (put there by
    /// hand?); never touched.
    pub undescribed: Vec<Utf8PathBuf>,
    /// Artifacts a record lists whose file is gone (removed by hand?).
    pub missing: Vec<(String, Utf8PathBuf)>,
    /// Files of pruned artifacts still on disk: a prune was interrupted; `gc` deletes them.
    pub interrupted: Vec<(String, Utf8PathBuf)>,
    /// Temporary files of provenance writes that were killed midway; `gc` deletes them.
    pub stale_temp_files: Vec<(String, Utf8PathBuf)>,
    pub unreadable: Vec<(String, anyhow::Error)>,
}

impl Inventory {
    pub fn total_bytes(&self) -> u64 {
        self.artifacts.iter().map(|kept| kept.bytes).sum()
    }
}

/// The kept-artifacts directory of one sandbox.
fn kept_dir(registry: &Registry, id: &str) -> Utf8PathBuf {
    registry.dirs(id).kept_artifacts
}

/// Takes the lock that one prune, or gc's purging and tidying, holds at a time (waiting for it):
/// two of them deciding at once what to delete could together delete more than either meant.
pub fn lock(registry: &Registry) -> anyhow::Result<FileLock> {
    FileLock::acquire(&registry.artifacts_dir().join(".lock"))
}

/// Lists every artifact file in the state directory: those of records (live sandboxes' in
/// their output directories, torn-down ones' under `artifacts/<id>/`), and those whose record
/// was purged, described by their `provenance.json`.
pub fn inventory(config: &Config) -> anyhow::Result<Inventory> {
    let listing = history::list(
        config,
        &ListFilter {
            all: true,
            ..ListFilter::default()
        },
    )?;
    let mut inventory = inventory_of(&config.registry, &listing.records)?;
    inventory.unreadable.extend(listing.unreadable);
    Ok(inventory)
}

/// [`inventory`] from records already read (reconciled), so `gc` reads each record once.
pub fn inventory_of(registry: &Registry, records: &[Record]) -> anyhow::Result<Inventory> {
    let mut inventory = Inventory::default();
    let root = registry.root().to_owned();
    let mut recorded: HashMap<String, &Record> = HashMap::new();
    for record in records {
        recorded.insert(record.id.clone(), record);
        let live = history::is_live(registry, &record.id, record.state);
        for artifact in &record.artifacts {
            if !artifact.path.starts_with(&root) {
                continue; // a file the build wrote elsewhere: not sandboxer's to keep or prune
            }
            if artifact.path.is_file() {
                inventory
                    .artifacts
                    .push(kept(record, live, true, artifact.clone()));
            } else {
                inventory
                    .missing
                    .push((record.id.clone(), artifact.path.clone()));
            }
        }
        for pruned in &record.pruned_artifacts {
            if pruned.artifact.path.exists() {
                inventory
                    .interrupted
                    .push((record.id.clone(), pruned.artifact.path.clone()));
            }
        }
    }

    for (id, dir) in kept_dirs(registry)? {
        let files = match files_in(&dir) {
            Ok((files, temp_files)) => {
                inventory
                    .stale_temp_files
                    .extend(temp_files.into_iter().map(|path| (id.clone(), path)));
                files
            }
            Err(err) => {
                inventory.unreadable.push((format!("artifacts/{id}"), err));
                continue;
            }
        };
        let described: BTreeSet<Utf8PathBuf> = match recorded.get(&id) {
            Some(record) => record
                .artifacts
                .iter()
                .map(|artifact| artifact.path.clone())
                .chain(
                    record
                        .pruned_artifacts
                        .iter()
                        .map(|p| p.artifact.path.clone()),
                )
                .collect(),
            None => {
                let path = dir.join(provenance::FILE_NAME);
                if !path.exists() {
                    inventory.undescribed.extend(files);
                    continue;
                }
                let document = match Document::read(&path) {
                    Ok(document) => document,
                    Err(err) => {
                        inventory.unreadable.push((format!("artifacts/{id}"), err));
                        continue;
                    }
                };
                for artifact in &document.artifacts {
                    let path = in_dir(&dir, &artifact.path);
                    if path.is_file() {
                        inventory.artifacts.push(Kept {
                            sandbox: document.sandbox.id.clone(),
                            profile: document.sandbox.profile.clone(),
                            state: document.sandbox.state,
                            live: false,
                            recorded: false,
                            created_at: document.sandbox.created_at,
                            path,
                            bytes: artifact.bytes,
                            sha256: artifact.sha256.clone(),
                        });
                    }
                }
                for pruned in &document.pruned_artifacts {
                    let path = in_dir(&dir, &pruned.artifact.path);
                    if path.exists() {
                        inventory.interrupted.push((id.clone(), path));
                    }
                }
                document
                    .artifacts
                    .iter()
                    .map(|artifact| &artifact.path)
                    .chain(document.pruned_artifacts.iter().map(|p| &p.artifact.path))
                    .map(|path| in_dir(&dir, path))
                    .collect()
            }
        };
        inventory
            .undescribed
            .extend(files.into_iter().filter(|file| !described.contains(file)));
    }
    inventory.artifacts.sort_by(|a, b| {
        (b.created_at, &b.sandbox, &b.path).cmp(&(a.created_at, &a.sandbox, &a.path))
    });
    Ok(inventory)
}

fn kept(record: &Record, live: bool, recorded: bool, artifact: Artifact) -> Kept {
    Kept {
        sandbox: record.id.clone(),
        profile: record.profile.clone(),
        state: record.state,
        live,
        recorded,
        created_at: record.created_at,
        path: artifact.path,
        bytes: artifact.bytes,
        sha256: artifact.sha256,
    }
}

/// Where a file a provenance document names is now: in the document's own directory (the
/// document may have been written before the file was moved there).
fn in_dir(dir: &Utf8Path, path: &Utf8Path) -> Utf8PathBuf {
    dir.join(path.file_name().unwrap_or(path.as_str()))
}

/// `artifacts/<id>` directories, by id, sorted.
fn kept_dirs(registry: &Registry) -> anyhow::Result<Vec<(String, Utf8PathBuf)>> {
    let root = registry.artifacts_dir();
    let mut dirs = Vec::new();
    let entries = match root.read_dir_utf8() {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(dirs),
        Err(err) => return Err(err).with_context(|| format!("reading {root}")),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {root}"))?;
        let name = entry.file_name().to_owned();
        if !name.starts_with('.') && entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            dirs.push((name, entry.into_path()));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The files in a kept-artifacts directory other than its provenance file, and apart from
/// them the temporary files of atomic writes (`files::write_atomically`).
fn files_in(dir: &Utf8Path) -> anyhow::Result<(Vec<Utf8PathBuf>, Vec<Utf8PathBuf>)> {
    let mut files = Vec::new();
    let mut temp_files = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        let name = entry.file_name();
        if name.starts_with(TEMP_PREFIX) {
            temp_files.push(entry.into_path());
        } else if name != provenance::FILE_NAME {
            files.push(entry.into_path());
        }
    }
    files.sort();
    temp_files.sort();
    Ok((files, temp_files))
}

/// How `files::write_atomically` names its temporary files.
const TEMP_PREFIX: &str = ".tmp-";

/// Deletes the temporary files a killed provenance write left in `dir`. Called with the lock
/// that every writer of that directory's provenance holds (the owner lock, or the artifacts
/// lock once the record is purged), so none of them is still being written.
fn remove_temp_files(dir: &Utf8Path) -> anyhow::Result<()> {
    let Ok(entries) = dir.read_dir_utf8() else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        if entry.file_name().starts_with(TEMP_PREFIX) {
            remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Before a teardown moves artifacts into `artifacts/<id>/`: writes their provenance there
/// first, so a kept file never sits without it. Called with the owner lock held.
pub fn before_teardown(registry: &Registry, record: &Record) -> anyhow::Result<()> {
    if record.artifacts.is_empty() {
        return Ok(());
    }
    let dir = kept_dir(registry, &record.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    Document::of(record).write(&dir.join(provenance::FILE_NAME))
}

/// Brings `artifacts/<id>/provenance.json` in line with the record: rewritten while some
/// artifact is kept there, removed (with the directory, when nothing else is in it) once none
/// is. Called with the owner lock held, after every change to what is kept.
pub fn settle(registry: &Registry, record: &Record) -> anyhow::Result<()> {
    let dir = kept_dir(registry, &record.id);
    let keeps_some = record
        .artifacts
        .iter()
        .any(|artifact| artifact.path.starts_with(&dir) && artifact.path.exists());
    if keeps_some {
        Document::of(record).write(&dir.join(provenance::FILE_NAME))
    } else {
        remove_provenance_dir(&dir)
    }
}

/// Removes a kept-artifacts directory's provenance file, then the directory if nothing else is
/// in it (an undescribed file keeps it, and is reported by `artifacts list`).
fn remove_provenance_dir(dir: &Utf8Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let file = dir.join(provenance::FILE_NAME);
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing {file}")),
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
            ) => {}
        Err(err) => return Err(err).with_context(|| format!("removing {dir}")),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Deletes a file if it is there, and makes the deletion durable.
fn remove_file(path: &Utf8Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("removing {path}")),
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Before a torn-down sandbox's record is purged: finishes any interrupted prune of its files
/// and leaves its kept artifacts' provenance next to them, up to date. Called with the owner
/// lock held.
pub fn before_purge(registry: &Registry, record: &Record) -> anyhow::Result<()> {
    for pruned in &record.pruned_artifacts {
        remove_file(&pruned.artifact.path)?;
    }
    settle(registry, record)
}

/// What `artifacts prune` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    /// Keep the artifacts of the newest N sandboxes of each profile (live ones count).
    pub keep_last: Option<u32>,
    /// Prune artifacts of sandboxes created longer ago than this.
    pub older_than: Option<Age>,
    /// Prune the oldest artifacts until all kept artifacts together take at most this many bytes.
    pub max_total: Option<u64>,
    pub dry_run: bool,
}

/// One artifact a prune chose, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct PruneEntry {
    pub sandbox: String,
    pub profile: String,
    pub path: Utf8PathBuf,
    pub bytes: u64,
    /// The rule that chose it.
    pub reason: String,
    pub outcome: Outcome,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything a prune did or (with `--dry-run`) would do.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub entries: Vec<PruneEntry>,
    /// Bytes freed (or that would be).
    pub freed_bytes: u64,
    /// Bytes kept afterwards, live sandboxes' artifacts included.
    pub kept_bytes: u64,
    /// Why `--max-total` could not be reached, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_of_target: Option<String>,
    #[serde(skip)]
    pub unreadable: Vec<(String, anyhow::Error)>,
}

impl PruneReport {
    pub fn failures(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.outcome == Outcome::Failed)
            .count()
    }
}

/// Deletes kept artifacts the request selects, oldest first; never one of a live sandbox.
///
/// `--keep-last N` protects the artifacts of each profile's newest N sandboxes (live ones
/// count); `--older-than` selects those of sandboxes created before then; `--max-total` then
/// selects the oldest remaining ones until the total fits. With `--keep-last` alone, everything
/// it does not protect is selected. Each artifact is attempted whatever happens to the others.
pub fn prune(config: &Config, request: &PruneRequest) -> anyhow::Result<PruneReport> {
    let registry = &config.registry;
    if request.keep_last.is_none() && request.older_than.is_none() && request.max_total.is_none() {
        return Err(crate::error::usage(
            "say what to prune: --keep-last N, --older-than DURATION and/or --max-total SIZE",
        ));
    }
    let _lock = lock(registry)?;
    let inventory = inventory(config)?;
    let now = Timestamp::now();
    let total = inventory.total_bytes();

    // Oldest first: the order in which artifacts are given up.
    let mut oldest_first: Vec<&Kept> = inventory.artifacts.iter().collect();
    oldest_first.reverse();

    let mut protected: BTreeSet<&str> = BTreeSet::new();
    if let Some(keep) = request.keep_last {
        let mut newest_per_profile: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for kept in &inventory.artifacts {
            let sandboxes = newest_per_profile.entry(&kept.profile).or_default();
            if !sandboxes.contains(&kept.sandbox.as_str()) {
                sandboxes.push(&kept.sandbox);
            }
        }
        for sandboxes in newest_per_profile.values() {
            protected.extend(sandboxes.iter().take(keep as usize));
        }
    }
    let prunable = |kept: &Kept| !kept.live && !protected.contains(kept.sandbox.as_str());

    let mut chosen: Vec<(&Kept, String)> = Vec::new();
    let mut chosen_paths: BTreeSet<&Utf8Path> = BTreeSet::new();
    let selects_alone = request.older_than.is_none() && request.max_total.is_none();
    for kept in &oldest_first {
        if !prunable(kept) {
            continue;
        }
        let reason = match (request.older_than, request.keep_last) {
            (Some(age), _) if kept.created_at.duration_until(now) > age.as_duration() => {
                format!("--older-than {age}")
            }
            (None, Some(keep)) if selects_alone => format!("--keep-last {keep}"),
            _ => continue,
        };
        chosen_paths.insert(&kept.path);
        chosen.push((kept, reason));
    }
    let mut short_of_target = None;
    if let Some(max) = request.max_total {
        let mut remaining = total - chosen.iter().map(|(kept, _)| kept.bytes).sum::<u64>();
        for kept in &oldest_first {
            if remaining <= max {
                break;
            }
            if prunable(kept) && !chosen_paths.contains(kept.path.as_path()) {
                remaining -= kept.bytes;
                chosen_paths.insert(&kept.path);
                chosen.push((kept, format!("--max-total {}", crate::size::human(max))));
            }
        }
        if remaining > max {
            short_of_target = Some(format!(
                "{} still kept, more than --max-total {}: the rest belongs to live sandboxes{}",
                crate::size::human(remaining),
                crate::size::human(max),
                if request.keep_last.is_some() {
                    " or to the newest sandboxes --keep-last protects"
                } else {
                    ""
                }
            ));
        }
    }
    chosen.sort_by(|(a, _), (b, _)| (a.created_at, &a.sandbox).cmp(&(b.created_at, &b.sandbox)));

    let mut report = PruneReport {
        unreadable: inventory.unreadable,
        short_of_target,
        ..PruneReport::default()
    };
    for (kept, reason) in chosen {
        let result = if request.dry_run {
            Ok(Outcome::Planned)
        } else {
            prune_one(registry, kept, &reason)
        };
        let (outcome, error) = match result {
            Ok(outcome) => (outcome, None),
            Err(err) => (Outcome::Failed, Some(format!("{err:#}"))),
        };
        if matches!(outcome, Outcome::Done | Outcome::Planned) {
            report.freed_bytes += kept.bytes;
        }
        report.entries.push(PruneEntry {
            sandbox: kept.sandbox.clone(),
            profile: kept.profile.clone(),
            path: kept.path.clone(),
            bytes: kept.bytes,
            reason,
            outcome,
            error: error.or_else(|| {
                (outcome == Outcome::Skipped)
                    .then(|| "another sandboxer is working on this sandbox".to_owned())
            }),
        });
    }
    report.kept_bytes = total - report.freed_bytes;
    Ok(report)
}

/// Prunes one artifact: describe it as pruned, then delete it, then tidy its directory.
fn prune_one(registry: &Registry, kept: &Kept, reason: &str) -> anyhow::Result<Outcome> {
    let pruned_at = Timestamp::now();
    let entry = |artifact: Artifact| PrunedArtifact {
        artifact,
        pruned_at,
        reason: reason.to_owned(),
    };
    let dir = kept_dir(registry, &kept.sandbox);
    if kept.recorded {
        let Some(Some(_owner)) = registry.try_lock_existing(&kept.sandbox)? else {
            return Ok(Outcome::Skipped);
        };
        // Under the owner lock nothing can bring an ended sandbox back to life; check anyway
        // that it is the ended sandbox the inventory saw.
        let current = registry.load_exact(&kept.sandbox)?;
        if history::is_live(registry, &current.id, current.state) {
            return Ok(Outcome::Skipped);
        }
        let mut found = false;
        let record = registry.update(&kept.sandbox, |record| {
            if let Some(at) = record.artifacts.iter().position(|a| a.path == kept.path) {
                let artifact = record.artifacts.remove(at);
                record.pruned_artifacts.push(entry(artifact));
                found = true;
            }
        })?;
        if !found {
            return Ok(Outcome::Skipped);
        }
        remove_file(&kept.path)?;
        settle(registry, &record)?;
    } else {
        let path = dir.join(provenance::FILE_NAME);
        let mut document = Document::read(&path)?;
        let Some(at) = document
            .artifacts
            .iter()
            .position(|artifact| in_dir(&dir, &artifact.path) == kept.path)
        else {
            return Ok(Outcome::Skipped);
        };
        let artifact = document.artifacts.remove(at);
        document.pruned_artifacts.push(entry(artifact));
        document.write(&path)?;
        remove_file(&kept.path)?;
        if !document
            .artifacts
            .iter()
            .any(|artifact| in_dir(&dir, &artifact.path).exists())
        {
            remove_provenance_dir(&dir)?;
        }
    }
    Ok(Outcome::Done)
}

/// Something `gc` found to finish in `artifacts/`.
#[derive(Debug)]
pub struct Leftover {
    pub id: String,
    pub kind: LeftoverKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverKind {
    /// Files of pruned artifacts still on disk: a prune was interrupted.
    InterruptedPrune,
    /// A kept-artifacts directory that keeps nothing (only a provenance file).
    EmptyArtifactDir,
    /// A temporary file of a provenance write that was killed midway.
    StaleTempFile,
}

/// What an interrupted prune (or teardown) left in `artifacts/`, given every record (as `gc`
/// read them). Called with [`lock`] held.
pub fn leftovers(registry: &Registry, records: &[Record]) -> anyhow::Result<Vec<Leftover>> {
    let inventory = inventory_of(registry, records)?;
    let mut found: BTreeMap<String, Leftover> = BTreeMap::new();
    for (id, path) in &inventory.interrupted {
        found.insert(
            id.clone(),
            Leftover {
                id: id.clone(),
                kind: LeftoverKind::InterruptedPrune,
                detail: format!("deleting {path}, pruned by an interrupted prune"),
            },
        );
    }
    for (id, path) in &inventory.stale_temp_files {
        found.entry(id.clone()).or_insert_with(|| Leftover {
            id: id.clone(),
            kind: LeftoverKind::StaleTempFile,
            detail: format!("deleting {path}, left by a provenance write that was killed"),
        });
    }
    let keeping: BTreeSet<&str> = inventory
        .artifacts
        .iter()
        .filter(|kept| kept.path.starts_with(registry.artifacts_dir()))
        .map(|kept| kept.sandbox.as_str())
        .collect();
    let undescribed: BTreeSet<&Utf8Path> = inventory
        .undescribed
        .iter()
        .filter_map(|path| path.parent())
        .collect();
    for (id, dir) in kept_dirs(registry)? {
        if !keeping.contains(id.as_str())
            && !undescribed.contains(dir.as_path())
            && !found.contains_key(&id)
        {
            found.insert(
                id.clone(),
                Leftover {
                    id,
                    kind: LeftoverKind::EmptyArtifactDir,
                    detail: format!("removing {dir}, which keeps no artifact"),
                },
            );
        }
    }
    Ok(found.into_values().collect())
}

/// Finishes one [`Leftover`]: deletes pruned files still on disk and tidies the directory.
/// `Ok(false)` when the sandbox is busy (someone else holds its lock). Called with [`lock`]
/// held.
pub fn finish(config: &Config, leftover: &Leftover) -> anyhow::Result<bool> {
    let registry = &config.registry;
    let dir = kept_dir(registry, &leftover.id);
    match registry.try_lock_existing(&leftover.id)? {
        Some(Some(_owner)) => {
            let record = registry.load_exact(&leftover.id)?;
            for pruned in &record.pruned_artifacts {
                remove_file(&pruned.artifact.path)?;
            }
            remove_temp_files(&dir)?;
            settle(registry, &record)?;
            Ok(true)
        }
        Some(None) => Ok(false),
        // The record was purged: the provenance file is all there is.
        None => {
            remove_temp_files(&dir)?;
            let path = dir.join(provenance::FILE_NAME);
            let document = match Document::read(&path) {
                Ok(document) => document,
                Err(_) if !path.exists() => return remove_provenance_dir(&dir).map(|()| true),
                Err(err) => return Err(err),
            };
            for pruned in &document.pruned_artifacts {
                remove_file(&in_dir(&dir, &pruned.artifact.path))?;
            }
            if !document
                .artifacts
                .iter()
                .any(|artifact| in_dir(&dir, &artifact.path).exists())
            {
                remove_provenance_dir(&dir)?;
            }
            Ok(true)
        }
    }
}
