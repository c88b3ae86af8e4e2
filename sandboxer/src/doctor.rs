//! `sandboxer doctor`: checks of this machine and configuration, each with a status and the fix.
//! It reads and probes; it never creates, changes or deletes anything.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::Serialize;

use crate::ext::vm_packer::runner;
use crate::profile::{Catalog, SearchPath};
use crate::registry::Registry;

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// Works, but something is missing or waiting that someone should look at.
    Warn,
    /// Something sandboxer needs does not work.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A stable name, e.g. `packer` or `state-dir`.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What doctor looks at: the same places the other commands use.
#[derive(Debug)]
pub struct Setup<'a> {
    pub state_dir: &'a Utf8Path,
    pub search: &'a SearchPath,
    /// `$SANDBOXER_PACKER`, if set.
    pub packer: Option<&'a Utf8Path>,
    /// State Hub as configured, or why its configuration is wrong.
    pub state_hub: Result<crate::hub::Settings, String>,
    /// `$SANDBOXER_PORT_REGISTRY`, if set.
    pub port_registry: Option<&'a Utf8Path>,
    /// `--shim-dest`: where the remote-build shim is installed, to check it is current.
    pub shim_dest: Option<&'a Utf8Path>,
}

/// Runs every check, in a stable order.
pub fn run(setup: &Setup<'_>) -> Vec<Check> {
    let mut checks = vec![packer(setup)];
    checks.push(tool(
        "qemu-img",
        &["--version"],
        "needed by the bundled example build (examples/ova) to make its disk",
        "apt-get install qemu-utils",
    ));
    checks.push(tool(
        "rsync",
        &["--version"],
        "needed by the remote-build shim's legacy path",
        "apt-get install rsync",
    ));
    checks.push(tool(
        "ssh",
        &["-V"],
        "needed by attach mode and the remote-build shim's legacy path",
        "apt-get install openssh-client",
    ));
    let state = state_dir(setup.state_dir);
    let state_ok = state.status != Status::Fail;
    checks.push(state);
    checks.push(file_locks(setup.state_dir, state_ok));
    checks.push(profiles(setup.search));
    checks.push(waiting_for_gc(setup.state_dir, state_ok));
    checks.push(state_hub(setup));
    if let Some(path) = setup.port_registry {
        checks.push(port_registry(path));
    }
    if let Some(dest) = setup.shim_dest {
        checks.push(shim(dest));
    }
    checks
}

/// How long doctor waits for State Hub to accept a connection.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Configured, reachable (a TCP connection; nothing is sent, so the token never leaves), and
/// nothing waiting in the spool.
fn state_hub(setup: &Setup<'_>) -> Check {
    let name = "state-hub";
    let settings = match &setup.state_hub {
        Ok(settings) => settings,
        Err(err) => {
            return Check::fail(
                name,
                err.clone(),
                "fix STATE_HUB_URL, STATE_HUB_TOKEN(_FILE) or the [state_hub] table of config.toml",
            );
        }
    };
    let Some(endpoint) = &settings.endpoint else {
        return Check::ok(
            name,
            "off (no STATE_HUB_URL, and no [state_hub] url in the config file)",
        );
    };
    let url = endpoint.events_url();
    let waiting = crate::hub::status(setup.state_dir, settings)
        .map(|status| {
            status
                .waiting
                .iter()
                .map(|sandbox| sandbox.events)
                .sum::<usize>()
        })
        .unwrap_or(0);
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let reached = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|addr| std::net::TcpStream::connect_timeout(&addr, REACH_TIMEOUT));
    let token = if endpoint.token.is_some() {
        "with a token"
    } else {
        "without a token"
    };
    match reached {
        Some(Ok(_)) if waiting == 0 => {
            Check::ok(name, format!("{url} ({token}) accepts connections"))
        }
        Some(Ok(_)) => Check::warn(
            name,
            format!("{url} ({token}) accepts connections; {waiting} events wait in the spool"),
            "sandboxer hub flush (the next create also sends them)",
        ),
        Some(Err(err)) => Check::warn(
            name,
            format!(
                "{url} does not accept connections ({err}); builds go on, events wait in the spool ({waiting} now)"
            ),
            "check STATE_HUB_URL and the network; `sandboxer hub status` shows the last delivery error",
        ),
        None => Check::warn(
            name,
            format!(
                "{url}: cannot resolve {host}; builds go on, events wait in the spool ({waiting} now)"
            ),
            "check STATE_HUB_URL and DNS",
        ),
    }
}

fn port_registry(path: &Utf8Path) -> Check {
    let name = "port-registry";
    match crate::ext::vm_packer::port_registry::PortRegistry::load(path, path.as_str()) {
        Ok(registry) => Check::ok(name, format!("{path}: {} VMs (read only)", registry.len())),
        Err(err) => Check::fail(
            name,
            format!("{err:#}"),
            "fix the registry at the location named, or point SANDBOXER_PORT_REGISTRY elsewhere",
        ),
    }
}

fn shim(dest: &Utf8Path) -> Check {
    let name = "shim";
    match crate::shim::check(dest) {
        Ok(report) => match report.failure() {
            None => Check::ok(name, format!("{dest}: current")),
            Some(failure) => Check::fail(
                name,
                failure,
                format!("sandboxer shim install --dest {dest}"),
            ),
        },
        Err(err) => Check::fail(
            name,
            format!("{err:#}"),
            "give --shim-dest the directory that holds remote-build.mk",
        ),
    }
}

/// Whether any check failed: doctor's exit code.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|check| check.status == Status::Fail)
}

fn packer(setup: &Setup<'_>) -> Check {
    let name = "packer";
    let packer = match runner::find_packer(setup.packer) {
        Ok(packer) => packer,
        Err(err) => {
            return Check::fail(
                name,
                format!("{err:#}"),
                "apt-get install packer (or set SANDBOXER_PACKER to its path)",
            );
        }
    };
    // Probing into a scratch cache: doctor writes nothing of sandboxer's own.
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            return Check::fail(
                name,
                format!("no temporary directory: {err}"),
                "check TMPDIR",
            );
        }
    };
    let cache = Utf8Path::from_path(scratch.path()).unwrap_or(Utf8Path::new("/tmp"));
    match runner::capabilities(&packer, cache) {
        Ok(found) if found.has_init => Check::ok(
            name,
            format!("{packer}: Packer {}, with `packer init`", found.version),
        ),
        Ok(found) => Check::ok(
            name,
            format!(
                "{packer}: Packer {}, without `packer init` (templates that pin plugins need 1.7+)",
                found.version
            ),
        ),
        Err(err) => Check::fail(
            name,
            format!("{packer} does not run: {err:#}"),
            "reinstall packer (apt-get install --reinstall packer)",
        ),
    }
}

/// An external tool on PATH, with the first line of its version output.
fn tool(name: &'static str, version_args: &[&str], why: &str, install: &str) -> Check {
    let Some(path) = on_path(name) else {
        return Check::warn(name, format!("not on PATH; {why}"), install);
    };
    let output = duct::cmd(path.as_std_path(), version_args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run();
    match output {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            let first = text.lines().next().unwrap_or("").trim();
            Check::ok(name, format!("{path}: {first}"))
        }
        Err(err) => Check::warn(name, format!("{path} does not run: {err}"), install),
    }
}

fn on_path(name: &str) -> Option<Utf8PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .and_then(|found| Utf8PathBuf::from_path_buf(found).ok())
}

fn state_dir(dir: &Utf8Path) -> Check {
    let name = "state-dir";
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Check::ok(
                name,
                format!(
                    "{dir} does not exist yet; the first command that needs it creates it (mode 700)"
                ),
            );
        }
        Err(err) => {
            return Check::fail(
                name,
                format!("{dir}: {err}"),
                "check the path and its parents",
            );
        }
    };
    if !meta.is_dir() {
        return Check::fail(
            name,
            format!("{dir} is not a directory"),
            "point SANDBOXER_HOME at a directory",
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Check::fail(
            name,
            format!("{dir} belongs to uid {}, not to you", meta.uid()),
            "set SANDBOXER_HOME to a directory of yours",
        );
    }
    if mode & 0o022 != 0 {
        return Check::fail(
            name,
            format!("{dir} is writable by others (mode {mode:o})"),
            format!("chmod 700 {dir}"),
        );
    }
    if let Err(err) = tempfile::tempfile_in(dir) {
        return Check::fail(
            name,
            format!("{dir} is not writable: {err}"),
            "check the filesystem (full? read-only?) and the directory's permissions",
        );
    }
    if mode != 0o700 {
        return Check::warn(
            name,
            format!("{dir} has mode {mode:o}; records and logs are private"),
            format!("chmod 700 {dir}"),
        );
    }
    Check::ok(name, format!("{dir} (mode 700, writable)"))
}

/// Liveness and placement rest on flock: two handles on one file must exclude each other.
fn file_locks(dir: &Utf8Path, state_ok: bool) -> Check {
    let name = "file-locks";
    if !state_ok {
        return Check::warn(
            name,
            "not checked: no usable state directory",
            "fix the state directory first",
        );
    }
    if !dir.is_dir() {
        // Probing elsewhere would mean writing outside the state directory.
        return Check::ok(name, "not checked until the state directory exists");
    }
    let probe = match tempfile::NamedTempFile::new_in(dir) {
        Ok(probe) => probe,
        Err(err) => {
            return Check::fail(
                name,
                format!("cannot make a probe file: {err}"),
                "fix the state directory first",
            );
        }
    };
    let (Ok(first), Ok(second)) = (probe.reopen(), probe.reopen()) else {
        return Check::fail(
            name,
            "cannot reopen the probe file",
            "fix the state directory first",
        );
    };
    let excluded = first.try_lock().is_ok()
        && matches!(second.try_lock(), Err(std::fs::TryLockError::WouldBlock));
    if excluded {
        Check::ok(name, format!("flock works on the filesystem of {dir}"))
    } else {
        Check::fail(
            name,
            format!("flock does not exclude on the filesystem of {dir} (NFS?)"),
            "put the state directory on a local filesystem (SANDBOXER_HOME)",
        )
    }
}

fn profiles(search: &SearchPath) -> Check {
    let name = "profiles";
    match Catalog::load(search) {
        Ok(catalog) => {
            let count = catalog.entries().count();
            let shadowed: Vec<String> = catalog
                .entries()
                .filter(|entry| !entry.shadowed.is_empty())
                .map(|entry| {
                    let hidden: Vec<String> =
                        entry.shadowed.iter().map(ToString::to_string).collect();
                    format!(
                        "{} ({}) shadows {}",
                        entry.profile.id,
                        entry.profile.source,
                        hidden.join(", ")
                    )
                })
                .collect();
            let mut detail = format!("{count} profiles parse");
            if !shadowed.is_empty() {
                detail.push_str(&format!("; {}", shadowed.join("; ")));
            }
            Check::ok(name, detail)
        }
        Err(err) => Check::fail(
            name,
            format!("{err:#}"),
            "fix the profile at the location named (`sandboxer profiles list` shows the search path's profiles)",
        ),
    }
}

/// Sandboxes that `gc` would act on: expired ones, and in-progress ones nobody owns any more.
/// Looked at without changing any record (no reconciling).
fn waiting_for_gc(dir: &Utf8Path, state_ok: bool) -> Check {
    let name = "sandboxes";
    if !state_ok || !dir.join("sandboxes").is_dir() {
        return Check::ok(name, "no sandboxes yet");
    }
    let registry = Registry::existing(dir);
    let listing = match registry.list() {
        Ok(listing) => listing,
        Err(err) => return Check::fail(name, format!("{err:#}"), "check the state directory"),
    };
    let now = Timestamp::now();
    let mut expired = 0;
    let mut orphaned = 0;
    let mut running = 0;
    for record in &listing.records {
        if record.state.is_in_progress() {
            match registry.try_lock(&record.id) {
                Ok(Some(_)) => orphaned += 1,
                Ok(None) => running += 1,
                Err(_) => {}
            }
        } else if crate::lifecycle::is_expired(record, now) {
            expired += 1;
        }
        if record
            .owner
            .as_ref()
            .is_some_and(|owner| owner.pgid.is_some())
            && !record.state.is_in_progress()
        {
            orphaned += 1;
        }
    }
    let unreadable = listing.unreadable.len();
    let summary = format!(
        "{} sandboxes: {running} provisioning, {expired} expired, {orphaned} orphaned, {unreadable} unreadable",
        listing.records.len() + unreadable
    );
    if unreadable > 0 {
        let names: Vec<&str> = listing
            .unreadable
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        return Check::warn(
            name,
            format!("{summary} ({})", names.join(", ")),
            "`sandboxer list` says what is wrong with each",
        );
    }
    if expired + orphaned > 0 {
        return Check::warn(name, summary, "run `sandboxer gc` (or schedule it)");
    }
    Check::ok(name, summary)
}
