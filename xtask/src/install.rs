//! `cargo xtask install` / `uninstall` (behind `make install` / `make uninstall`): the binary,
//! its man pages and its shell completions in their conventional places under
//! `$DESTDIR$PREFIX`; uninstall removes exactly those files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use xshell::{Shell, cmd};

/// Where things go, and which binary to install.
#[derive(Debug)]
pub struct Layout {
    /// `$DESTDIR$PREFIX`: staging root (DESTDIR, for packagers) joined with the prefix.
    pub root: PathBuf,
}

impl Layout {
    pub fn new(prefix: &str, destdir: &str) -> anyhow::Result<Layout> {
        anyhow::ensure!(
            prefix.starts_with('/'),
            "PREFIX must be an absolute path, not {prefix:?}"
        );
        let root = if destdir.is_empty() {
            PathBuf::from(prefix)
        } else {
            // DESTDIR is prepended to the absolute prefix, as autotools and fd's Makefile do.
            PathBuf::from(format!("{}{prefix}", destdir.trim_end_matches('/')))
        };
        Ok(Layout { root })
    }

    fn binary(&self) -> PathBuf {
        self.root.join("bin/sandboxer")
    }

    fn man_dir(&self) -> PathBuf {
        self.root.join("share/man/man1")
    }

    /// `(shell, file)` for each completion script.
    fn completions(&self) -> [(&'static str, PathBuf); 3] {
        [
            (
                "bash",
                self.root
                    .join("share/bash-completion/completions/sandboxer"),
            ),
            ("zsh", self.root.join("share/zsh/site-functions/_sandboxer")),
            (
                "fish",
                self.root
                    .join("share/fish/vendor_completions.d/sandboxer.fish"),
            ),
        ]
    }

    /// Every file `install` writes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.binary()];
        files.extend(
            crate::man::page_names()
                .into_iter()
                .map(|name| self.man_dir().join(name)),
        );
        files.extend(self.completions().map(|(_, path)| path));
        files
    }
}

/// Installs `binary` (built by the caller) with man pages and completions.
pub fn install(sh: &Shell, layout: &Layout, binary: &Path) -> anyhow::Result<()> {
    let bin = layout.binary();
    copy(binary, &bin, 0o755)?;
    let staging = tempfile::tempdir()?;
    for page in crate::man::generate(staging.path())? {
        let name = page.file_name().context("a man page has a name")?;
        copy(&page, &layout.man_dir().join(name), 0o644)?;
    }
    for (shell, path) in layout.completions() {
        let script = cmd!(sh, "{binary} completions {shell}").quiet().read()?;
        write(&path, format!("{script}\n").as_bytes(), 0o644)?;
    }
    for file in layout.files() {
        eprintln!("installed {}", file.display());
    }
    Ok(())
}

/// Removes exactly the files `install` writes (directories stay: they may hold others' files).
pub fn uninstall(layout: &Layout) -> anyhow::Result<()> {
    for file in layout.files() {
        match std::fs::remove_file(&file) {
            Ok(()) => eprintln!("removed {}", file.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("removing {}", file.display())),
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &bytes, mode)
}

fn write(to: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = to.parent().context("an install path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written beside the target and renamed over it, so a running sandboxer is never
    // overwritten in place ("text file busy") and a failed install leaves the old file.
    let staged = dir.join(format!(
        ".{}.installing",
        to.file_name().context("a file name")?.to_string_lossy()
    ));
    std::fs::write(&staged, bytes).with_context(|| format!("writing {}", staged.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&staged, to).with_context(|| format!("installing {}", to.display()))
}

/// `make install DESTDIR=…` then `make uninstall DESTDIR=…` into a scratch directory, with the
/// given binary: every file lands with the right mode, the installed binary and its
/// completions work, and uninstall leaves no file behind.
pub fn smoke_test(sh: &Shell, binary: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let destdir = scratch.path().to_str().context("a UTF-8 temp dir")?;
    let layout = Layout::new("/usr/local", destdir)?;
    install(sh, &layout, binary)?;
    for file in layout.files() {
        let meta = std::fs::metadata(&file)
            .with_context(|| format!("install did not write {}", file.display()))?;
        let expected = if file == layout.binary() {
            0o755
        } else {
            0o644
        };
        anyhow::ensure!(
            meta.permissions().mode() & 0o777 == expected,
            "{} has mode {:o}, expected {expected:o}",
            file.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let installed = layout.binary();
    let version = cmd!(sh, "{installed} --version").quiet().read()?;
    anyhow::ensure!(version.starts_with("sandboxer "), "{version}");
    let man = std::fs::read_to_string(layout.man_dir().join("sandboxer-create.1"))?;
    // roff escapes each hyphen of an option: `\-\-profile`.
    anyhow::ensure!(
        man.contains("\\-\\-profile"),
        "sandboxer-create.1 lacks --profile"
    );
    uninstall(&layout)?;
    let mut left = Vec::new();
    walk_files(scratch.path(), &mut left);
    anyhow::ensure!(left.is_empty(), "uninstall left {left:?}");
    eprintln!("xtask: make install / uninstall into DESTDIR: ok");
    Ok(())
}

fn walk_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_files(&path, found);
        } else {
            found.push(path);
        }
    }
}
