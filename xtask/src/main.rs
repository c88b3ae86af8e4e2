//! `cargo xtask <task>`: the project's chores, as Rust instead of shell scripts.

mod bench;
mod bench_dispatch;
mod bench_history;
mod bench_hub;
mod bench_remote;
mod check;
mod custodian;
mod demo;
mod fuzz;
mod install;
mod man;
mod setup;
mod stats;
mod verify_shim;

use anyhow::Context as _;
use xshell::Shell;

const HELP: &str = "\
cargo xtask <task>

tasks:
  setup [--for demo|test]  install missing system packages (apt-get; needs root)
  demo                     setup, then build the bundled example OVA through sandboxer
  check                    setup, then fmt --check, clippy -D warnings, every test, verify-shim,
                           a short fuzz run
  fuzz --ci | fuzz TARGET [SECONDS]
                           coverage-guided fuzzing (cargo-fuzz); --ci: every target briefly
  bench [--no-fail] [--rounds N] [FIGURE...]
                           every performance figure against its baseline, measured in one
                           run; fails when a target is missed (`bench --help` lists figures)
  bench-hub                create with a State Hub answering after 2 s vs none (ratio <= 1.02)
  bench-history            list (live only) over 10,000 ended + 100 live records vs cat (<= 1.25x)
  bench-remote             a build on a build host (sshd on loopback) vs the same build here
  man [DIR]                man pages for every command (default DIR: target/man)
  install [--prefix P] [--destdir D] [--binary B]
                           build (unless --binary) and install the binary, man pages and
                           shell completions under D+P (default P: /usr/local)
  uninstall [--prefix P] [--destdir D]
                           remove exactly the files install writes
  bench-dispatch           what `make remote-build` adds to a direct `sandboxer create`
  verify-shim              the `make remote-build` shim end to end (real make, sh, Packer)
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
        ["bench", rest @ ..] => bench::run(&sh, rest),
        ["bench-hub"] => bench_hub::run(&sh),
        ["bench-history"] => bench_history::run(&sh),
        ["bench-remote"] => bench_remote::run(&sh),
        ["man"] => man::generate(&sh.current_dir().join("target/man")).map(|pages| {
            eprintln!("wrote {} man pages to target/man", pages.len());
        }),
        ["man", dir] => man::generate(std::path::Path::new(dir)).map(|pages| {
            eprintln!("wrote {} man pages to {dir}", pages.len());
        }),
        ["install", rest @ ..] => {
            let options = InstallOptions::parse(rest)?;
            let layout = install::Layout::new(&options.prefix, &options.destdir)?;
            let binary = match options.binary {
                Some(binary) => std::path::PathBuf::from(binary),
                None => {
                    let cargo = cargo();
                    xshell::cmd!(sh, "{cargo} build --release --locked --package sandboxer")
                        .run()?;
                    sh.current_dir().join("target/release/sandboxer")
                }
            };
            install::install(&sh, &layout, &binary)
        }
        ["uninstall", rest @ ..] => {
            let options = InstallOptions::parse(rest)?;
            install::uninstall(&install::Layout::new(&options.prefix, &options.destdir)?)
        }
        ["bench-dispatch"] => bench_dispatch_task(&sh),
        ["verify-shim"] => verify_shim::run_task(&sh),
        ["fuzz", rest @ ..] => fuzz::run(&sh, rest),
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            Ok(())
        }
        other => anyhow::bail!("unknown task {other:?}\n\n{HELP}"),
    }
    .with_context(|| format!("cargo xtask {}", args.join(" ")))
}

/// `--prefix P --destdir D --binary B`, any order, each optional.
struct InstallOptions {
    prefix: String,
    destdir: String,
    binary: Option<String>,
}

impl InstallOptions {
    fn parse(args: &[&str]) -> anyhow::Result<InstallOptions> {
        let mut options = InstallOptions {
            prefix: "/usr/local".to_owned(),
            destdir: String::new(),
            binary: None,
        };
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let value = rest
                .next()
                .with_context(|| format!("{flag} needs a value"))?
                .to_string();
            match *flag {
                "--prefix" => options.prefix = value,
                "--destdir" => options.destdir = value,
                "--binary" => options.binary = Some(value),
                other => anyhow::bail!("unknown option {other:?}\n\n{HELP}"),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask bench-dispatch`, until `cargo xtask bench` reports it with the rest.
fn bench_dispatch_task(sh: &Shell) -> anyhow::Result<()> {
    setup::run(sh, setup::Purpose::Bench)?;
    let cargo = cargo();
    xshell::cmd!(sh, "{cargo} build --release --quiet --package sandboxer").run()?;
    let times = bench_dispatch::measure(&sh.current_dir().join("target/release/sandboxer"))?;
    println!("{}", times.summary());
    anyhow::ensure!(
        times.within_target(),
        "make remote-build adds {:.1} ms; target {} ms",
        times.added_ms(),
        bench_dispatch::TARGET_ADDED.as_millis()
    );
    Ok(())
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
