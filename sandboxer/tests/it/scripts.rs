//! Every shell script the project ships or runs passes shellcheck.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Shells shellcheck understands, as named on a `#!` line.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ksh"];

/// Whether `path` is a shell script: named `*.sh`, or starting with a `#!` line that runs one of
/// [`SHELLS`] (directly or through `env`).
fn is_shell_script(path: &Path) -> bool {
    if path.extension().is_some_and(|ext| ext == "sh") {
        return true;
    }
    let mut head = [0_u8; 128];
    let Ok(read) = std::fs::File::open(path).and_then(|mut file| file.read(&mut head)) else {
        return false;
    };
    let head = String::from_utf8_lossy(&head[..read]);
    let Some(shebang) = head.lines().next().and_then(|line| line.strip_prefix("#!")) else {
        return false;
    };
    let mut words = shebang.split_whitespace();
    let mut program = words.next().unwrap_or_default();
    if program.rsplit('/').next() == Some("env") {
        // `#!/usr/bin/env bash`, `#!/usr/bin/env -S bash -e`
        program = words
            .find(|word| !word.starts_with('-'))
            .unwrap_or_default();
    }
    SHELLS.contains(&program.rsplit('/').next().unwrap_or_default())
}

/// Every shell script below `dir`, leaving out build output and git's own files.
fn shell_scripts(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if entry.file_name() != "target" && entry.file_name() != ".git" {
                found.extend(shell_scripts(&path));
            }
        } else if kind.is_file() && is_shell_script(&path) {
            found.push(path);
        }
    }
    found
}

#[test]
fn shipped_shell_scripts_pass_shellcheck() {
    crate::common::require_tool("shellcheck");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let scripts = shell_scripts(&root);
    // The walk itself is checked too: the CI entry point is a script it must find.
    assert!(
        scripts.contains(&root.join(".ci/run")),
        "the walk missed .ci/run: {scripts:?}"
    );
    let mut failures = Vec::new();
    for script in &scripts {
        let output = Command::new("shellcheck").arg(script).output().unwrap();
        if !output.status.success() {
            failures.push(format!(
                "shellcheck {}:\n{}",
                script.strip_prefix(&root).unwrap().display(),
                String::from_utf8_lossy(&output.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scripts_are_recognised_by_name_or_shebang() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("a.sh", "echo no shebang\n", true),
        ("b", "#!/bin/sh\n", true),
        ("c", "#!/usr/bin/env bash\n", true),
        ("d", "#!/usr/bin/env -S bash -eu\n", true),
        ("e", "#!/usr/bin/env python3\n", false),
        ("f", "#!/bin/shell-lookalike\n", false),
        ("g", "plain text\n", false),
    ];
    for (name, text, _) in cases {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    for (name, _, expected) in cases {
        assert_eq!(is_shell_script(&dir.path().join(name)), expected, "{name}");
    }
}
