//! Files compiled into the binary: the built-in profiles, the bundled example templates and the
//! sources of the `make remote-build` shim.

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest as _, Sha256};

mod files {
    include!(concat!(env!("OUT_DIR"), "/builtin_files.rs"));
}

/// The prefix that marks a path as one of the bundled files, e.g. `builtin:examples/ova/ova.pkr.hcl`.
pub const SCHEME: &str = "builtin:";

/// `(path relative to the repository, TOML text)` of every built-in profile.
pub fn profiles() -> &'static [(&'static str, &'static str)] {
    files::PROFILES
}

/// `(file name, text, executable)` of every file in `infra-shims/`, as the sources are.
pub fn shims() -> &'static [(&'static str, &'static str, bool)] {
    files::SHIMS
}

/// Writes the bundled files below `prefix` (e.g. `examples/ova`) into `cache_root` and returns the
/// directory they landed in. The directory is named after a hash of the contents, so a newer
/// binary never reuses an older copy and an existing copy is reused as it is.
pub fn materialize(prefix: &str, cache_root: &Utf8Path) -> anyhow::Result<Utf8PathBuf> {
    let prefix = prefix.trim_end_matches('/');
    let members: Vec<_> = files::EXAMPLES
        .iter()
        .filter(|(path, _, _)| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
        })
        .collect();
    if members.is_empty() {
        return Err(crate::error::usage(format!(
            "no bundled files under `{SCHEME}{prefix}`; bundled: {}",
            bundled_dirs().join(", ")
        )));
    }
    let mut hasher = Sha256::new();
    for (path, bytes, executable) in &members {
        hasher.update(path.as_bytes());
        hasher.update(*bytes);
        hasher.update([u8::from(*executable)]);
    }
    let digest = format!("{:x}", hasher.finalize());
    let dest = cache_root.join(&digest[..16]);
    if dest.is_dir() {
        return Ok(dest.join(prefix));
    }
    std::fs::create_dir_all(cache_root).with_context(|| format!("creating {cache_root}"))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(cache_root)
        .with_context(|| format!("creating a staging directory in {cache_root}"))?;
    for (path, bytes, executable) in &members {
        let target = staging.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap())?;
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
        if *executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    // Another process may have won the race; its copy has the same contents.
    let staged = staging.keep();
    if std::fs::rename(&staged, &dest).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
        anyhow::ensure!(dest.is_dir(), "could not place bundled files in {dest}");
    }
    Ok(dest.join(prefix))
}

/// The bundled example directories, for error messages.
fn bundled_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = files::EXAMPLES
        .iter()
        .filter_map(|(path, _, _)| {
            Utf8Path::new(path)
                .parent()
                .map(|dir| format!("{SCHEME}{dir}"))
        })
        .collect();
    dirs.dedup();
    dirs
}
