//! Facts about processes: start times that survive pid reuse, liveness, process-group signals.

use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Fields 3 and on of `/proc/<pid>/stat` (field 3 is the state); `None` once the pid is gone.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// Whether a process in this state has exited (a zombie waiting to be reaped, or dead).
fn has_exited(state: &str) -> bool {
    state == "Z" || state == "X"
}

/// The start time of `pid` in clock ticks since boot, from `/proc/<pid>/stat` field 22.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether the process `pid` that started at `started` still runs (and is not a zombie).
pub fn is_alive(pid: u32, started: u64) -> bool {
    let Some(fields) = stat_fields(pid) else {
        return false;
    };
    !fields.first().is_some_and(|state| has_exited(state))
        && fields.get(19).and_then(|start| start.parse().ok()) == Some(started)
}

/// This process's pid and start time.
pub fn current() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

/// The machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Sends `signal` to every process in the group led by `pgid`; a group that is gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) -> std::io::Result<()> {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Whether the process group `pgid` is provably the one whose leader started at
/// `leader_started`: its leader is that process (running, or exited and not yet reaped), or its
/// leader is gone (Linux never hands out a pid that is still in use as a process-group id, so
/// the group cannot belong to a later process with that pid). Another process under the
/// leader's pid means the pid was reused, and the group is not ours to signal.
pub fn is_same_group(pgid: u32, leader_started: Option<u64>) -> bool {
    match start_time(pgid) {
        None => true,
        Some(started) => leader_started == Some(started),
    }
}

/// Whether any process of the group `pgid` still runs. Zombies do not count: they have exited
/// and only wait for their parent (or init) to reap them.
pub fn group_runs(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            return false;
        };
        // fields[0] is the state (field 3), fields[2] the process group (field 5).
        stat_fields(pid).is_some_and(|fields| {
            fields.get(2).and_then(|group| group.parse().ok()) == Some(pgid)
                && !has_exited(&fields[0])
        })
    })
}

/// Waits until no process of the group `pgid` runs, at most `timeout`; whether it ended.
pub fn wait_for_group_end(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !group_runs(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let (pid, started) = current();
        assert!(started > 0);
        assert!(is_alive(pid, started));
        assert!(!is_alive(pid, started + 1));
        assert!(!is_alive(u32::MAX - 1, started));
    }

    /// Spawns `program` as the leader of its own process group; returns it and its start time.
    fn group_leader(program: &str, args: &[&str]) -> (std::process::Child, u32, u64) {
        use std::os::unix::process::CommandExt as _;
        let child = std::process::Command::new(program)
            .args(args)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_time(pid).unwrap();
        (child, pid, started)
    }

    #[test]
    fn an_exited_leader_not_yet_reaped_still_leads_its_group() {
        let (mut child, pgid, started) = group_leader("true", &[]);
        // Not waited for: it stays a zombie, as a leader whose parent died does until init
        // reaps it. Its group is still the recorded one, not a reused pid.
        let deadline = Instant::now() + Duration::from_secs(10);
        while stat_fields(pgid).is_some_and(|fields| !has_exited(&fields[0])) {
            assert!(Instant::now() < deadline, "`true` did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(is_same_group(pgid, Some(started)));
        assert!(!is_same_group(pgid, Some(started + 1)), "a reused pid");
        assert!(!is_same_group(pgid, None), "an unknown leader");
        assert!(!group_runs(pgid), "a zombie does not run");
        child.wait().unwrap();
        assert!(is_same_group(pgid, Some(started)), "a reaped leader");
    }

    #[test]
    fn a_killed_group_is_waited_for_until_it_ends() {
        let (mut child, pgid, _) = group_leader("sleep", &["30"]);
        assert!(group_runs(pgid));
        assert!(!wait_for_group_end(pgid, Duration::from_millis(50)));
        signal_group(pgid, Signal::KILL).unwrap();
        // Ends although nobody has reaped the leader yet.
        assert!(wait_for_group_end(pgid, Duration::from_secs(10)));
        child.wait().unwrap();
    }
}
