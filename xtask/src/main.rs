//! `cargo xtask <task>`: the project's chores, as Rust instead of shell scripts.

mod bench;
mod check;
mod demo;
mod setup;

use anyhow::Context as _;
use xshell::Shell;

const HELP: &str = "\
cargo xtask <task>

tasks:
  setup [--for demo|test]  install missing system packages (apt-get; needs root)
  demo                     setup, then build the bundled example OVA through sandboxer
  check                    setup, then fmt --check, clippy -D warnings and every test
  bench                    speed and memory targets, as ratios measured in one run
";

fn main() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["setup"] | ["setup", "--for", "test"] => setup::run(&sh, setup::Purpose::Test),
        ["setup", "--for", "demo"] => setup::run(&sh, setup::Purpose::Demo),
        ["demo"] => demo::run(&sh),
        ["check"] => check::run(&sh),
        ["bench"] => bench::run(&sh),
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            Ok(())
        }
        other => anyhow::bail!("unknown task {other:?}\n\n{HELP}"),
    }
    .with_context(|| format!("cargo xtask {}", args.join(" ")))
}

/// The workspace root, from this crate's manifest dir, never from the current directory.
fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// The cargo that runs us, so toolchain overrides carry through.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
