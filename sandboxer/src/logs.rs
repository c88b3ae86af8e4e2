//! A sandbox's provision log: printing it, or following it while the sandbox provisions.
//!
//! The log is written redacted and line-buffered by the provision, so following it is reading
//! the file as it grows; the record says when to stop.

use std::fs::File;
use std::io::{ErrorKind, Read as _, Write};
use std::time::Duration;

use anyhow::Context as _;

use crate::error::Error;
use crate::lifecycle::{self, Config};
use crate::record::Record;

/// How often a follower looks for more output (and at the record) when there is none.
const POLL: Duration = Duration::from_millis(100);

/// Copies the sandbox's log to `out`; with `follow`, keeps copying what is appended until the
/// sandbox is no longer pending or provisioning (including a build whose sandboxer died, which
/// is found orphaned). Returns the record as it stood at the end.
pub fn copy(
    config: &Config,
    id_or_prefix: &str,
    follow: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Record> {
    let mut record = lifecycle::show(config, id_or_prefix)?;
    let path = config.registry.dirs(&record.id).log;
    let mut file: Option<File> = None;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if file.is_none() {
            file = match File::open(&path) {
                Ok(opened) => Some(opened),
                Err(err) if err.kind() == ErrorKind::NotFound => None,
                Err(err) => return Err(err).with_context(|| format!("opening {path}")),
            };
        }
        // Whatever is there now, to the end.
        if let Some(file) = file.as_mut() {
            loop {
                let read = file
                    .read(&mut buffer)
                    .with_context(|| format!("reading {path}"))?;
                if read == 0 {
                    break;
                }
                out.write_all(&buffer[..read])?;
            }
            out.flush()?;
        }
        let still_running = record.state.is_in_progress();
        if !follow || !still_running {
            if file.is_none() && !still_running && !follow {
                return Err(Error::new(
                    crate::error::ErrorKind::NotFound,
                    format!(
                        "sandbox {} has no provision log ({}); it never started provisioning",
                        record.id, record.state
                    ),
                )
                .into());
            }
            return Ok(record);
        }
        std::thread::sleep(POLL);
        // Read the state before the next pass over the file: whatever the build wrote before
        // it finished is then read in that pass, and nothing after it is waited for.
        record = lifecycle::show(config, &record.id)?;
    }
}
