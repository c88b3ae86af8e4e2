//! The spool: one append-only, fsynced file per sandbox under `<state>/hub/spool/`, holding
//! every event meant for State Hub and how far delivery got.
//!
//! Lines are JSON: `{"seq": N, "event": {...}}` for an event (the CloudEvent exactly as it is
//! sent), `{"delivered_through": N}` once State Hub acknowledged every event up to `seq` N.
//! Events are written before they are sent, so a crash loses nothing; a file whose events are
//! all acknowledged is removed. A file is locked (flock) by the one process delivering from it,
//! so two never send the same event.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One event waiting for delivery: its sequence number and its CloudEvent JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub json: String,
}

/// The spool directory.
pub fn dir(state_dir: &Utf8Path) -> Utf8PathBuf {
    state_dir.join("hub").join("spool")
}

/// One sandbox's spool file, locked by this process.
#[derive(Debug)]
pub struct Spool {
    path: Utf8PathBuf,
    file: File,
}

#[derive(Deserialize)]
struct Line<'a> {
    seq: Option<u64>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    delivered_through: Option<u64>,
}

impl Spool {
    /// Opens (creating) the spool of `sandbox`, if no other process holds it.
    pub fn try_open(state_dir: &Utf8Path, sandbox: &str) -> anyhow::Result<Option<Spool>> {
        let dir = dir(state_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {dir}"))?;
        Self::try_open_path(&dir.join(format!("{sandbox}.jsonl")))
    }

    fn try_open_path(path: &Utf8Path) -> anyhow::Result<Option<Spool>> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening spool {path}"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking spool {path}"));
            }
        }
        // A line cut short by a crash mid-write is dropped: it was never durable, so never sent.
        let mut text = Vec::new();
        (&file)
            .read_to_end(&mut text)
            .with_context(|| format!("reading spool {path}"))?;
        let complete = text
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |at| at + 1);
        if complete < text.len() {
            file.set_len(complete as u64)
                .and_then(|()| file.sync_data())
                .with_context(|| format!("dropping a torn line from spool {path}"))?;
        }
        Ok(Some(Spool {
            path: path.to_owned(),
            file,
        }))
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Appends events and makes them durable.
    pub fn append_events(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        let mut text = String::new();
        for entry in entries {
            text.push_str(&format!(
                "{{\"seq\":{},\"event\":{}}}\n",
                entry.seq, entry.json
            ));
        }
        self.append(&text)
    }

    /// Records that every event up to `seq` was delivered.
    pub fn append_delivered(&mut self, seq: u64) -> anyhow::Result<()> {
        self.append(&format!("{{\"delivered_through\":{seq}}}\n"))
    }

    fn append(&mut self, text: &str) -> anyhow::Result<()> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing spool {}", self.path))
    }

    /// The events not yet delivered, in order.
    pub fn pending(&mut self) -> anyhow::Result<VecDeque<Entry>> {
        let mut text = String::new();
        let mut file = File::open(&self.path).with_context(|| format!("reading {}", self.path))?;
        file.read_to_string(&mut text)
            .with_context(|| format!("reading {}", self.path))?;
        parse(&text).with_context(|| format!("reading spool {}", self.path))
    }

    /// Removes the file (all its events were delivered); the lock goes with it.
    pub fn remove(self) -> anyhow::Result<()> {
        std::fs::remove_file(&self.path).with_context(|| format!("removing {}", self.path))
    }
}

/// The undelivered events of a spool file's text; a torn last line (a crash mid-write) is
/// ignored.
pub fn parse(text: &str) -> anyhow::Result<VecDeque<Entry>> {
    let mut pending: VecDeque<Entry> = VecDeque::new();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for (number, raw) in complete.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line<'_> =
            serde_json::from_str(raw).with_context(|| format!("line {}", number + 1))?;
        match (line.seq, line.event, line.delivered_through) {
            (Some(seq), Some(event), None) => pending.push_back(Entry {
                seq,
                json: event.get().to_owned(),
            }),
            (None, None, Some(through)) => pending.retain(|entry| entry.seq > through),
            _ => anyhow::bail!("line {}: neither an event nor a delivery mark", number + 1),
        }
    }
    Ok(pending)
}

/// A spool file on disk, as `hub status` reports it.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub sandbox: String,
    /// Undelivered events, or why the file could not be read.
    pub events: Result<VecDeque<Entry>, String>,
    /// A running process is delivering from it.
    pub in_use: bool,
}

/// The spool files under `state_dir`, oldest sandbox first.
pub fn list(state_dir: &Utf8Path) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let dir = dir(state_dir);
    let mut files = Vec::new();
    let entries = match dir.read_dir_utf8() {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(err) => return Err(err).with_context(|| format!("reading {dir}")),
    };
    for entry in entries {
        let path = entry.with_context(|| format!("reading {dir}"))?.into_path();
        if path.extension() == Some("jsonl") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The sandbox a spool file belongs to.
pub fn sandbox_of(path: &Utf8Path) -> String {
    path.file_stem().unwrap_or_default().to_owned()
}

/// What waits in each spool file, without taking any.
pub fn survey(state_dir: &Utf8Path) -> anyhow::Result<Vec<Waiting>> {
    let mut waiting = Vec::new();
    for path in list(state_dir)? {
        let in_use = match File::open(&path) {
            Ok(file) => matches!(
                file.try_lock_shared(),
                Err(std::fs::TryLockError::WouldBlock)
            ),
            Err(_) => false,
        };
        let events = std::fs::read_to_string(&path)
            .map_err(|err| err.to_string())
            .and_then(|text| parse(&text).map_err(|err| format!("{err:#}")));
        waiting.push(Waiting {
            sandbox: sandbox_of(&path),
            events,
            in_use,
        });
    }
    Ok(waiting)
}

/// Opens a listed spool file if no other process holds it.
pub fn try_take(path: &Utf8Path) -> anyhow::Result<Option<Spool>> {
    if !path.exists() {
        return Ok(None); // delivered and removed by someone else meanwhile
    }
    Spool::try_open_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            json: format!("{{\"id\":\"{seq}\"}}"),
        }
    }

    #[test]
    fn delivered_marks_and_torn_lines() {
        let temp = tempfile::tempdir().unwrap();
        let state = Utf8Path::from_path(temp.path()).unwrap();
        let mut spool = Spool::try_open(state, "sb-1").unwrap().unwrap();
        assert!(Spool::try_open(state, "sb-1").unwrap().is_none(), "locked");
        spool
            .append_events(&[entry(1), entry(2), entry(3)])
            .unwrap();
        spool.append_delivered(2).unwrap();
        assert_eq!(spool.pending().unwrap(), [entry(3)]);
        // A crash mid-write leaves a torn line: ignored, and the next line starts afresh.
        let path = spool.path().to_owned();
        drop(spool);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":4,\"ev")
            .unwrap();
        let mut spool = Spool::try_open(state, "sb-1").unwrap().unwrap();
        assert_eq!(spool.pending().unwrap(), [entry(3)]);
        spool.append_events(&[entry(5)]).unwrap();
        assert_eq!(spool.pending().unwrap(), [entry(3), entry(5)]);
        let survey = survey(state).unwrap();
        assert_eq!(survey.len(), 1);
        assert!(survey[0].in_use);
        assert_eq!(survey[0].events.as_ref().unwrap().len(), 2);
        spool.remove().unwrap();
        assert!(list(state).unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        let err = parse("{\"delivered_through\":1}\nnot json\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
