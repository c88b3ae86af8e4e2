//! The state directory: sandbox ids, records, per-sandbox locks and atomic writes.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;

use crate::error::{not_found, usage};
use crate::files::{FileLock, open_lock_file, sync_dir, write_atomically};
use crate::record::{Record, SCHEMA_VERSION, State};

/// The state directory (`$SANDBOXER_HOME`, else `$XDG_STATE_HOME/sandboxer`).
#[derive(Debug, Clone)]
pub struct Registry {
    root: Utf8PathBuf,
}

/// Paths of one sandbox's files.
#[derive(Debug, Clone)]
pub struct SandboxDirs {
    pub root: Utf8PathBuf,
    pub record: Utf8PathBuf,
    pub log: Utf8PathBuf,
    /// Scratch space, the provision's `TMPDIR`; removed on teardown.
    pub work: Utf8PathBuf,
    /// What the provision produces (Packer's `output_directory`); removed on teardown.
    pub output: Utf8PathBuf,
    /// Artifacts kept after teardown; outside `root` so teardown can remove `root`'s contents.
    pub kept_artifacts: Utf8PathBuf,
}

/// An exclusive lock on one sandbox, held while a process changes it; released on drop or death.
pub type SandboxLock = FileLock;

/// Records read from disk, plus the sandbox directories that could not be read.
#[derive(Debug, Default)]
pub struct Listing {
    pub records: Vec<Record>,
    pub unreadable: Vec<(String, anyhow::Error)>,
}

/// The few fields of a record that decide whether a listing wants it: read without building
/// the whole record, so that skipping thousands of old records costs little more than reading
/// them.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecordHead {
    pub schema_version: u32,
    pub id: String,
    pub profile: String,
    pub mode: String,
    pub state: State,
    pub created_at: Timestamp,
}

impl Registry {
    /// Opens (creating if needed, mode 0700) the state directory at `root`.
    ///
    /// Refuses a directory owned by another user or writable by others: records decide what
    /// gets deleted, so nobody else may be able to plant one.
    pub fn open(root: &Utf8Path) -> anyhow::Result<Registry> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("creating state directory {root}"))?;
        // Canonical from here on: paths stored in records (artifacts) are canonical too, and
        // comparing them with a path reached through a symlink would go wrong.
        let root = &root
            .canonicalize_utf8()
            .with_context(|| format!("resolving state directory {root}"))?;
        let meta = fs::metadata(root).with_context(|| format!("reading state directory {root}"))?;
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(usage(format!(
                "state directory {root} belongs to another user (uid {}); set SANDBOXER_HOME to a directory of yours",
                meta.uid()
            )));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(usage(format!(
                "state directory {root} is writable by others (mode {:o}); run `chmod 700 {root}`",
                meta.permissions().mode() & 0o777
            )));
        }
        for sub in ["sandboxes", "artifacts", "cache", "ssh"] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root.join(sub))
                .with_context(|| format!("creating {root}/{sub}"))?;
        }
        Ok(Registry {
            root: root.to_owned(),
        })
    }

    /// The state directory at `root` as it is, for looking without changing anything: nothing
    /// is created or checked (see [`Registry::open`] for that).
    pub fn existing(root: &Utf8Path) -> Registry {
        Registry {
            root: root.canonicalize_utf8().unwrap_or_else(|_| root.to_owned()),
        }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    /// Where bundled files and detected tool facts are cached.
    pub fn cache_dir(&self) -> Utf8PathBuf {
        self.root.join("cache")
    }

    /// sandboxer's own known_hosts file: host keys recorded on first attach (see `ssh`).
    pub fn known_hosts(&self) -> Utf8PathBuf {
        self.root.join("ssh").join("known_hosts")
    }

    /// Held while `create` checks that no live sandbox holds a claim and records its own, so
    /// two creates never both find a claim free.
    pub fn lock_claims(&self) -> anyhow::Result<FileLock> {
        FileLock::acquire(&self.root.join("claims.lock"))
    }

    pub fn dirs(&self, id: &str) -> SandboxDirs {
        let root = self.root.join("sandboxes").join(id);
        SandboxDirs {
            record: root.join("record.json"),
            log: root.join("provision.log"),
            work: root.join("work"),
            output: root.join("output"),
            kept_artifacts: self.root.join("artifacts").join(id),
            root,
        }
    }

    /// Allocates a fresh id and publishes its directory with the first record and the owner
    /// lock already in place.
    ///
    /// The directory is prepared under a hidden staging name and renamed into place with
    /// `RENAME_NOREPLACE`, so a reader never sees a sandbox without a record, and two processes
    /// never share an id.
    pub fn create(
        &self,
        make_record: impl Fn(&str) -> Record,
    ) -> anyhow::Result<(Record, SandboxLock)> {
        let sandboxes = self.root.join("sandboxes");
        for _ in 0..16 {
            let id = new_id(Timestamp::now());
            let staging = sandboxes.join(format!(".new-{id}"));
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&staging)
                .with_context(|| format!("creating {staging}"))?;
            let lock = FileLock::acquire(&staging.join("lock"))?;
            let record = make_record(&id);
            let mut json = serde_json::to_vec_pretty(&record)?;
            json.push(b'\n');
            write_atomically(&staging.join("record.json"), &json)?;
            let published = rustix::fs::renameat_with(
                rustix::fs::CWD,
                staging.as_std_path(),
                rustix::fs::CWD,
                sandboxes.join(&id).as_std_path(),
                rustix::fs::RenameFlags::NOREPLACE,
            );
            match published {
                Ok(()) => {
                    sync_dir(&sandboxes)?;
                    return Ok((record, lock));
                }
                Err(rustix::io::Errno::EXIST) => {
                    // Same millisecond and same random suffix as another sandbox: try another id.
                    drop(lock);
                    let _ = fs::remove_dir_all(&staging);
                }
                Err(err) => {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(std::io::Error::from(err))
                        .with_context(|| format!("publishing sandbox {id}"));
                }
            }
        }
        anyhow::bail!("could not allocate a unique sandbox id in {sandboxes}")
    }

    /// Takes the sandbox's owner lock, waiting for whoever holds it.
    ///
    /// The owner lock is held for as long as a process works on the sandbox (a whole build);
    /// the OS releases it when that process dies, which is how others tell a dead owner.
    pub fn lock(&self, id: &str) -> anyhow::Result<SandboxLock> {
        FileLock::acquire(&self.dirs(id).root.join("lock"))
    }

    /// Changes a record: read, apply `change`, write, all under the record's write lock, so that
    /// concurrent changes to different fields (a build finishing, an `extend`) are never lost.
    /// Returns the record as written.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Record)) -> anyhow::Result<Record> {
        let _guard = FileLock::acquire(&self.dirs(id).root.join("record.lock"))?;
        let mut record = self.load_exact(id)?;
        change(&mut record);
        record.updated_at = Timestamp::now();
        self.write(&record)?;
        Ok(record)
    }

    /// Takes the lock of a sandbox that may have been purged meanwhile: `None` when its
    /// directory is gone, `Some(None)` when someone else holds the lock.
    pub fn try_lock_existing(&self, id: &str) -> anyhow::Result<Option<Option<SandboxLock>>> {
        let root = self.dirs(id).root;
        match FileLock::try_acquire(&root.join("lock")) {
            Ok(lock) => Ok(Some(lock)),
            Err(_) if !root.exists() => Ok(None),
            Err(err) => Err(err).with_context(|| format!("locking sandbox {id}")),
        }
    }

    /// Takes the sandbox's lock if nobody holds it.
    pub fn try_lock(&self, id: &str) -> anyhow::Result<Option<SandboxLock>> {
        FileLock::try_acquire(&self.dirs(id).root.join("lock"))
            .with_context(|| format!("locking sandbox {id}"))
    }

    fn write(&self, record: &Record) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(record)?;
        json.push(b'\n');
        write_atomically(&self.dirs(&record.id).record, &json)
    }

    /// Reads a record by id or unique id prefix.
    pub fn load(&self, id_or_prefix: &str) -> anyhow::Result<Record> {
        let id = self.resolve_id(id_or_prefix)?;
        self.load_exact(&id)
    }

    /// Reads the record of a full id (no prefix lookup, so no directory listing).
    pub fn load_exact(&self, id: &str) -> anyhow::Result<Record> {
        let path = self.dirs(id).record;
        let text = fs::read(&path).with_context(|| format!("reading record {path}"))?;
        self.parse(id, &path, &text)
    }

    /// Reads the record of sandbox `id` from its bytes (see [`crate::record::parse`]).
    fn parse(&self, id: &str, path: &Utf8Path, text: &[u8]) -> anyhow::Result<Record> {
        let record =
            crate::record::parse(text).with_context(|| format!("reading record {path}"))?;
        // A record copied or edited into another sandbox's directory must not act on that
        // other sandbox: every write goes to the directory of `record.id`.
        anyhow::ensure!(
            record.id == id,
            "reading record {path}: it names sandbox {}, not {id}; restore the record or remove the directory",
            record.id
        );
        Ok(record)
    }

    /// Turns a unique prefix into a full id.
    pub fn resolve_id(&self, id_or_prefix: &str) -> anyhow::Result<String> {
        if id_or_prefix.is_empty()
            || !id_or_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(usage(format!("invalid sandbox id {id_or_prefix:?}")));
        }
        // An exact id is found with one stat, so `show ID` costs the same among 10 sandboxes
        // as among 10,000; only a prefix needs the listing. (The check above keeps `/` and
        // `.` out, so this never leaves `sandboxes/` nor finds a staging directory.)
        if self.root.join("sandboxes").join(id_or_prefix).is_dir() {
            return Ok(id_or_prefix.to_owned());
        }
        let ids = self.ids()?;
        let matches: Vec<&String> = ids
            .iter()
            .filter(|id| id.starts_with(id_or_prefix))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(not_found(
                match self.purged_with_kept_artifacts(id_or_prefix) {
                    Some(dir) => format!(
                        "sandbox `{id_or_prefix}` was purged (its record outlived its retention); its kept artifacts and their provenance are in {dir}"
                    ),
                    None => format!("no sandbox `{id_or_prefix}` (see `sandboxer list --all`)"),
                },
            )),
            many => Err(usage(self.ambiguous(id_or_prefix, many))),
        }
    }

    /// "`sb-0` matches 3 sandboxes; give more of the id:" and one line per candidate, newest
    /// first, with what tells them apart.
    fn ambiguous(&self, prefix: &str, candidates: &[&String]) -> String {
        const SHOWN: usize = 10;
        let mut text = format!(
            "`{prefix}` matches {} sandboxes; give more of the id:",
            candidates.len()
        );
        let shown: Vec<&String> = candidates.iter().rev().take(SHOWN).copied().collect();
        let rows: Vec<[String; 4]> = shown
            .iter()
            .map(|id| match self.load_exact(id) {
                Ok(record) => [
                    record.id,
                    record.state.to_string(),
                    record.profile,
                    format!("created {}", record.created_at),
                ],
                Err(_) => [
                    (*id).clone(),
                    "unreadable".to_owned(),
                    String::new(),
                    String::new(),
                ],
            })
            .collect();
        let mut widths = [0; 4];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        for row in &rows {
            let line = format!(
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            text.push('\n');
            text.push_str(line.trim_end());
        }
        if candidates.len() > SHOWN {
            text.push_str(&format!(
                "\n  ... and {} more (`sandboxer list --all` shows them)",
                candidates.len() - SHOWN
            ));
        }
        text
    }

    /// The kept-artifacts directory of the one purged sandbox whose id starts with `prefix`.
    pub fn purged_with_kept_artifacts(&self, prefix: &str) -> Option<Utf8PathBuf> {
        let dir = self.artifacts_dir();
        let mut found = dir
            .read_dir_utf8()
            .ok()?
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.file_name().starts_with(prefix)
                    && !entry.file_name().starts_with('.')
                    && !self.dirs(entry.file_name()).root.exists()
            })
            .map(|entry| entry.into_path());
        let one = found.next()?;
        found.next().is_none().then_some(one)
    }

    /// Names of the directories in `sandboxes/`, sorted: ids, and hidden `.new-<id>` staging
    /// directories of sandboxes still being published.
    fn sandbox_dir_names(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.root.join("sandboxes");
        let mut names = Vec::new();
        for entry in dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?
        {
            let entry = entry.with_context(|| format!("reading {dir}"))?;
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                names.push(entry.file_name().to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Sandbox ids in creation order.
    fn ids(&self) -> anyhow::Result<Vec<String>> {
        let mut ids = self.sandbox_dir_names()?;
        ids.retain(|name| !name.starts_with('.'));
        Ok(ids)
    }

    /// Every record, oldest first. A directory whose record is missing (a create that died
    /// before its first write) or unreadable is reported, not skipped in silence.
    pub fn list(&self) -> anyhow::Result<Listing> {
        self.scan_with(None::<fn(&RecordHead) -> bool>)
    }

    /// The records whose [`RecordHead`] `wanted` accepts, oldest first: each record file is read
    /// once, and only the wanted ones are parsed in full. Unreadable ones are reported as by
    /// [`Registry::list`].
    pub fn scan(&self, wanted: impl FnMut(&RecordHead) -> bool) -> anyhow::Result<Listing> {
        self.scan_with(Some(wanted))
    }

    fn scan_with(
        &self,
        mut wanted: Option<impl FnMut(&RecordHead) -> bool>,
    ) -> anyhow::Result<Listing> {
        let mut listing = Listing::default();
        for id in self.ids()? {
            let path = self.dirs(&id).record;
            let parsed = fs::read(&path)
                .with_context(|| format!("reading record {path}"))
                .and_then(|text| {
                    if let Some(wanted) = wanted.as_mut() {
                        let head: RecordHead = serde_json::from_slice(&text)
                            .with_context(|| format!("parsing record {path}"))?;
                        // A newer record is parsed in full, so its error says to upgrade.
                        if head.schema_version <= SCHEMA_VERSION && !wanted(&head) {
                            return Ok(None);
                        }
                    }
                    self.parse(&id, &path, &text).map(Some)
                });
            match parsed {
                Ok(Some(record)) => listing.records.push(record),
                Ok(None) => {}
                // Purged (by a gc) since the directory was listed: not there, not unreadable.
                Err(_) if !self.dirs(&id).root.exists() => {}
                Err(err) => listing.unreadable.push((id, err)),
            }
        }
        Ok(listing)
    }

    /// Whether the sandbox still holds working files (a kept failure's output directory, or a
    /// provision's scratch space), which only a teardown removes.
    pub fn holds_files(&self, id: &str) -> bool {
        let dirs = self.dirs(id);
        dirs.output.exists() || dirs.work.exists()
    }

    /// Where kept artifacts live: `artifacts/<id>/`, one directory per sandbox.
    pub fn artifacts_dir(&self) -> Utf8PathBuf {
        self.root.join("artifacts")
    }

    /// Deletes a sandbox's record and directory for good. The directory is first renamed to a
    /// hidden `.purge-<id>`, so that a purge killed midway never leaves a sandbox directory
    /// without its record; `gc` removes what such a purge left ([`Registry::stale_purges`]).
    /// Called with the owner lock held.
    pub fn purge(&self, id: &str) -> anyhow::Result<()> {
        let sandboxes = self.root.join("sandboxes");
        let from = sandboxes.join(id);
        let to = sandboxes.join(format!("{PURGE_PREFIX}{id}"));
        fs::rename(&from, &to).with_context(|| format!("moving {from} out of the way"))?;
        sync_dir(&sandboxes)?;
        fs::remove_dir_all(&to).with_context(|| format!("removing {to}"))
    }

    /// Hidden `.purge-<id>` directories of purges that did not finish.
    pub fn stale_purges(&self) -> anyhow::Result<Vec<String>> {
        let mut names = self.sandbox_dir_names()?;
        names.retain(|name| name.starts_with(PURGE_PREFIX));
        Ok(names)
    }

    /// Removes one of [`Registry::stale_purges`].
    pub fn remove_stale_purge(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            name.starts_with(PURGE_PREFIX) && !name.contains('/'),
            "not a purged sandbox directory: {name}"
        );
        let path = self.root.join("sandboxes").join(name);
        fs::remove_dir_all(&path).with_context(|| format!("removing {path}"))
    }
}

/// Prefix of a sandbox directory being purged.
const PURGE_PREFIX: &str = ".purge-";

impl Registry {
    /// Hidden `.new-<id>` directories whose creator died before publishing them.
    pub fn stale_allocations(&self) -> anyhow::Result<Vec<String>> {
        let mut stale = Vec::new();
        for name in self.sandbox_dir_names()? {
            if !name.starts_with(".new-") {
                continue;
            }
            let lock = open_lock_file(&self.root.join("sandboxes").join(&name).join("lock"))?;
            if lock.try_lock().is_ok() {
                stale.push(name);
            }
        }
        Ok(stale)
    }

    /// Removes one of [`Registry::stale_allocations`].
    pub fn remove_stale_allocation(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            name.starts_with(".new-") && !name.contains('/'),
            "not a staging directory: {name}"
        );
        let path = self.root.join("sandboxes").join(name);
        fs::remove_dir_all(&path).with_context(|| format!("removing {path}"))
    }
}

/// Crockford base32, lower case: no i, l, o, u, so ids read aloud well.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `sb-` + 9 characters of milliseconds since the epoch + 4 random characters.
///
/// Fixed width, so ids sort by creation time as strings; the random part separates ids made in
/// the same millisecond.
pub fn new_id(now: Timestamp) -> String {
    let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let mut id = String::from("sb-");
    for shift in (0..9).rev() {
        id.push(ALPHABET[((millis >> (shift * 5)) & 31) as usize] as char);
    }
    for _ in 0..4 {
        id.push(ALPHABET[fastrand::usize(..32)] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_time() {
        let earlier = new_id(Timestamp::from_millisecond(1_700_000_000_000).unwrap());
        let later = new_id(Timestamp::from_millisecond(1_700_000_000_001).unwrap());
        assert!(earlier < later, "{earlier} {later}");
        assert_eq!(earlier.len(), 16);
    }

    #[test]
    fn state_dir_writable_by_others_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap().join("state");
        Registry::open(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Registry::open(&root).unwrap_err().to_string();
        assert!(err.contains("writable by others"), "{err}");
    }
}
