//! `cargo xtask man`: man pages for `sandboxer` and each of its commands, from the clap
//! definition itself (clap_mangen), so they cannot drift from `--help`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Writes `sandboxer.1` and `sandboxer-<command>[-<sub>].1` into `dir`; returns the files.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut command = sandboxer::cli::command();
    command.build();
    write_pages(&command, "sandboxer", dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = command.clone().name(name.to_owned());
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The page names `generate` writes, without writing anything.
pub fn page_names() -> Vec<String> {
    fn walk(command: &clap::Command, name: &str, names: &mut Vec<String>) {
        names.push(format!("{name}.1"));
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, &format!("{name}-{}", sub.get_name()), names);
            }
        }
    }
    let mut command = sandboxer::cli::command();
    command.build();
    let mut names = Vec::new();
    walk(&command, "sandboxer", &mut names);
    names
}
