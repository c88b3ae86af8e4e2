//! Every shell script the project ships or runs passes shellcheck.

use std::path::Path;
use std::process::Command;

#[test]
fn shipped_shell_scripts_pass_shellcheck() {
    crate::common::require_tool("shellcheck");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scripts = [
        "examples/ova/make-ova.sh",
        "tests/fixtures/fakes/fake-packer-ignores-sigint",
        "tests/fixtures/fakes/fake-packer-floods-output",
        ".ci/run",
    ];
    for script in scripts {
        let path = root.join(script);
        assert!(path.is_file(), "{script} is missing");
        let output = Command::new("shellcheck").arg(&path).output().unwrap();
        assert!(
            output.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}
