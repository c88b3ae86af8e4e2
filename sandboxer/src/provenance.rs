//! Provenance: what made a sandbox's artifacts (the template and its digest, var files, the
//! tool's version, the builds that ran, the variable values passed), in the record and as the
//! stable JSON document that `show --provenance` prints and that sits next to kept artifacts.
//!
//! The document's shape is documented in `docs/history.md`; fields are only ever added.

use std::collections::BTreeMap;
use std::io::Read as _;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::inputs::Value;
use crate::record::{Artifact, BuildRun, PrunedArtifact, Record, State};

/// The `format` of the document; bumped only if a field changes meaning.
pub const FORMAT: &str = "sandboxer-provenance/1";

/// The file next to kept artifacts (`artifacts/<id>/provenance.json`).
pub const FILE_NAME: &str = "provenance.json";

/// What an extension knows about the inputs of a build: recorded when the sandbox is created,
/// before the build starts, so a failed build has it too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildProvenance {
    /// The template as it was when the build was prepared.
    #[serde(default)]
    pub template: Option<TemplateDigest>,
    /// Var files passed to the tool (`-var-file=`), in order.
    #[serde(default)]
    pub var_files: Vec<FileDigest>,
    /// The tool that ran the build.
    #[serde(default)]
    pub tool: Option<Tool>,
    /// Every variable value passed to the tool as `-var`; secret ones as `<redacted>` (never a
    /// hash: a hash of a short secret gives it away). Values from var files are in the files.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Inputs that name files, with each path made absolute: what `create --like` passes, so a
    /// rebuild finds the same files from any directory.
    #[serde(default)]
    pub input_paths: BTreeMap<String, Value>,
}

impl BuildProvenance {
    /// What changed between the build `before` describes and this one, as warnings: the
    /// template's digest, a var file's digest, the tool's version.
    pub fn differences(&self, before: &BuildProvenance) -> Vec<String> {
        let mut changes = Vec::new();
        if let (Some(now), Some(then)) = (&self.template, &before.template)
            && now.sha256 != then.sha256
        {
            let files: Vec<String> = now
                .files
                .iter()
                .filter(|file| {
                    !then
                        .files
                        .iter()
                        .any(|old| old.path == file.path && old.sha256 == file.sha256)
                })
                .map(|file| file.path.to_string())
                .chain(
                    then.files
                        .iter()
                        .filter(|old| !now.files.iter().any(|file| file.path == old.path))
                        .map(|old| format!("{} (gone)", old.path)),
                )
                .collect();
            changes.push(format!(
                "the template changed: {} had sha256 {}, it is {} now{}",
                then.path,
                then.sha256,
                now.sha256,
                if files.is_empty() || (files.len() == 1 && now.files.len() == 1) {
                    String::new()
                } else {
                    format!(" (changed: {})", files.join(", "))
                }
            ));
        }
        for (now, then) in self.var_files.iter().zip(&before.var_files) {
            if now.sha256 != then.sha256 {
                changes.push(format!(
                    "var file {} changed: sha256 {} then, {} now",
                    now.path, then.sha256, now.sha256
                ));
            }
        }
        if let (Some(now), Some(then)) = (&self.tool, &before.tool)
            && now.version != then.version
        {
            let version = |version: &Option<String>| {
                version
                    .clone()
                    .unwrap_or_else(|| "an unknown version".to_owned())
            };
            changes.push(format!(
                "{} is {} now; the recorded build ran {}",
                now.name,
                version(&now.version),
                version(&then.version)
            ));
        }
        changes
    }
}

/// A template file, or a directory of them, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDigest {
    pub path: Utf8PathBuf,
    /// For a file, its sha256; for a directory, the sha256 of the `sha256sum` listing of its
    /// template and var files in byte order of their names (see [`directory_digest`]).
    pub sha256: String,
    /// Each file that went into the digest, by name, with its own sha256.
    pub files: Vec<FileDigest>,
}

/// A file and its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: Utf8PathBuf,
    pub sha256: String,
}

/// The tool that ran a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub path: Utf8PathBuf,
    /// `None` when the tool would not say.
    pub version: Option<String>,
}

/// The sha256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The sha256 of a file's contents, streamed.
pub fn file_sha256(path: &Utf8Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {path}"))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The digest of a directory's files: the sha256 of the lines `sha256sum` prints for them
/// (`<hex>  <name>\n`), the files in byte order of their names. Anyone can check it with
/// `sha256sum $(LC_ALL=C ls <files>) | sha256sum` in that directory. A file that sets a secret
/// enters as `<redacted>` in place of its hash, as it is listed.
pub fn directory_digest(files: &[FileDigest]) -> String {
    let mut sorted: Vec<&FileDigest> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    let mut listing = String::new();
    for file in sorted {
        listing.push_str(&format!("{}  {}\n", file.sha256, file.path));
    }
    sha256_hex(listing.as_bytes())
}

/// The provenance document of one sandbox: `show --provenance --json`, and the
/// `provenance.json` next to its kept artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub format: String,
    pub sandbox: Sandbox,
    /// The inputs as resolved, secret ones as `<redacted>`; a list input is an array.
    pub inputs: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub build: BuildProvenance,
    /// The builds that ran (Packer: one per source) and how each ended.
    #[serde(default)]
    pub builds: Vec<BuildRun>,
    /// Each artifact with its size, sha256 and the build that made it.
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub pruned_artifacts: Vec<PrunedArtifact>,
}

/// Who the document is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub profile: String,
    pub profile_source: String,
    pub extension: String,
    pub mode: String,
    pub state: State,
    pub created_at: Timestamp,
    #[serde(default)]
    pub torn_down_at: Option<Timestamp>,
    /// The sandbox it was made like (`create --like`), when it was.
    #[serde(default)]
    pub like: Option<String>,
}

impl Document {
    pub fn of(record: &Record) -> Document {
        Document {
            format: FORMAT.to_owned(),
            sandbox: Sandbox {
                id: record.id.clone(),
                profile: record.profile.clone(),
                profile_source: record.profile_source.clone(),
                extension: record.extension.clone(),
                mode: record.mode.clone(),
                state: record.state,
                created_at: record.created_at,
                torn_down_at: record.torn_down_at,
                like: record.like.clone(),
            },
            inputs: record.inputs.clone(),
            build: record.provenance.clone().unwrap_or_default(),
            builds: record.builds.clone(),
            artifacts: record.artifacts.clone(),
            pruned_artifacts: record.pruned_artifacts.clone(),
        }
    }

    /// Reads a `provenance.json`; a document of an unknown format is refused, not guessed at.
    pub fn read(path: &Utf8Path) -> anyhow::Result<Document> {
        let text = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let document: Document =
            serde_json::from_slice(&text).with_context(|| format!("parsing {path}"))?;
        anyhow::ensure!(
            document.format == FORMAT,
            "{path} is in format {:?}, which this sandboxer does not know ({FORMAT}); upgrade sandboxer",
            document.format
        );
        Ok(document)
    }

    /// Writes the document atomically (temp file, fsync, rename, directory fsync).
    pub fn write(&self, path: &Utf8Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::files::write_atomically(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_digest_is_what_sha256sum_piped_to_sha256sum_prints() {
        // printf 'a' > b.pkr.hcl; printf 'b' > a.pkr.hcl; sha256sum a.pkr.hcl b.pkr.hcl | sha256sum
        let files = [
            FileDigest {
                path: "b.pkr.hcl".into(),
                sha256: sha256_hex(b"a"),
            },
            FileDigest {
                path: "a.pkr.hcl".into(),
                sha256: sha256_hex(b"b"),
            },
        ];
        let listing = format!(
            "{}  a.pkr.hcl\n{}  b.pkr.hcl\n",
            sha256_hex(b"b"),
            sha256_hex(b"a")
        );
        assert_eq!(directory_digest(&files), sha256_hex(listing.as_bytes()));
    }
}
