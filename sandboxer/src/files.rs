//! Durable files and lock files: atomic replacement with fsyncs, and flock'd files whose lock
//! the kernel releases when the holder dies.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

use anyhow::Context as _;
use camino::Utf8Path;

/// Writes `contents` to `path` so that readers see the old file or the new one, never a mix:
/// temp file in the same directory (mode 0600), fsync, rename, fsync the directory.
pub fn write_atomically(path: &Utf8Path, contents: &[u8]) -> anyhow::Result<()> {
    write_atomically_with_mode(path, contents, 0o600)
}

/// [`write_atomically`] for a file others read or run (e.g. 0o755 for a script): the temporary
/// file gets `mode` (whatever the umask) before the rename, so `path` never has another one.
pub fn write_atomically_with_mode(
    path: &Utf8Path,
    contents: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {dir}"))?;
    temp.write_all(contents)
        .with_context(|| format!("writing {path}"))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {path}"))?;
    temp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {path}"))?;
    temp.persist(path)
        .with_context(|| format!("replacing {path}"))?;
    sync_dir(dir)
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Utf8Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing directory {dir}"))
}

/// An exclusive lock on a file, released on drop or when the process dies.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path` (created if needed), waiting for whoever holds it.
    pub fn acquire(path: &Utf8Path) -> anyhow::Result<FileLock> {
        let file = open_lock_file(path)?;
        file.lock().with_context(|| format!("locking {path}"))?;
        Ok(FileLock { _file: file })
    }

    /// Takes the lock on `path` (created if needed) if nobody holds it.
    pub fn try_acquire(path: &Utf8Path) -> anyhow::Result<Option<FileLock>> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("locking {path}"))
            }
        }
    }

    /// Wraps a file whose lock the caller already holds.
    pub fn from_locked(file: File) -> FileLock {
        FileLock { _file: file }
    }
}

/// Opens (creating, mode 0600) a file that is only ever used for its lock.
pub fn open_lock_file(path: &Utf8Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening lock file {path}"))
}
