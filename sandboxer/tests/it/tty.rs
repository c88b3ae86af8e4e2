//! The live status line, as a person at a terminal sees it: sandboxer's stderr is a
//! pseudo-terminal whose every byte the test reads.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

use crate::common::{Sandboxer, require_tool};

/// Runs a two-second build with stderr on a fresh 100x24 terminal; returns everything the
/// terminal received, and stdout.
fn build_on_a_terminal(no_color: bool) -> (String, String) {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = sandboxer.fixture("sleep");
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap()
        .into();
    rustix::termios::tcsetwinsize(
        &slave,
        rustix::termios::Winsize {
            ws_row: 24,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let mut command = sandboxer.command(&[
        "create",
        "--profile",
        "vm-packer-build",
        "-i",
        &format!("packer_template={template}/sleep.pkr.hcl"),
        "-i",
        "vm_name=tty",
        "-i",
        "var.seconds=2",
    ]);
    command
        .env("TERM", "xterm-256color")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let child = command.spawn().unwrap();
    drop(command); // our copy of the terminal's slave end: EOF comes when sandboxer's closes
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match master.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
                // Linux says EIO once every slave end is closed.
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let output = child.wait_with_output().unwrap();
    let terminal = reader.join().unwrap();
    assert!(output.status.success(), "{terminal}");
    (terminal, String::from_utf8(output.stdout).unwrap())
}

#[test]
fn a_terminal_gets_a_live_status_line_below_packers_output() {
    let (terminal, stdout) = build_on_a_terminal(false);
    let id = stdout.trim();
    // The status line: the sandbox, the current step, the step's clock and the total one.
    let status = terminal
        .split(['\r', '\n'])
        .find(|line| line.contains(id) && line.contains("null.sleep: Running local shell script"))
        .unwrap_or_else(|| panic!("no status line naming the step: {terminal:?}"));
    assert!(
        status.contains("step ") && status.contains("00:00:0"),
        "{status:?}"
    );
    // Redrawn in place (erase line), coloured, and cleared before the result.
    assert!(terminal.contains("\x1b[2K"), "{terminal:?}");
    assert!(
        terminal.contains("\x1b[36m"),
        "the spinner is coloured: {terminal:?}"
    );
    // Packer's lines scroll above it, without timestamps (the status line keeps the time).
    assert!(terminal.contains("==> null.sleep: Running local shell script"));
    assert!(
        terminal.contains("\x1b[2Ksandboxer: provisioning on `local`\r\n"),
        "printed over the erased status line, which is drawn again below: {terminal:?}"
    );
    let result = terminal.rfind(&format!("sandbox {id} is ready")).unwrap();
    let last_status = terminal.rfind("step ").unwrap();
    assert!(
        last_status < result,
        "the status line is gone before the result"
    );
}

#[test]
fn no_color_keeps_the_status_line_but_drops_the_colours() {
    let (terminal, stdout) = build_on_a_terminal(true);
    assert!(terminal.contains(stdout.trim()), "{terminal:?}");
    assert!(
        terminal.contains("\x1b[2K"),
        "still a live line: {terminal:?}"
    );
    let colours = ["\x1b[36m", "\x1b[1m", "\x1b[2m", "\x1b[0m", "\x1b[m"];
    for colour in colours {
        assert!(!terminal.contains(colour), "{colour:?} in {terminal:?}");
    }
}
