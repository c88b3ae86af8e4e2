//! Packer templates: where one is, which format it is, which variables it declares, which
//! builds it defines, and its own auto var files.
//!
//! Reading the declarations ourselves saves a `packer inspect` run (~0.2 s) per build: Packer
//! 1.6.6 rejects a `-var` the template does not declare, so sandboxer must know them up front.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use crate::builtin;
use crate::error::usage;

/// How Packer will read the template; decided by file name, as Packer decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `*.pkr.hcl` / `*.pkr.json` files, or a directory of them.
    Hcl2,
    /// A legacy `*.json` template.
    LegacyJson,
}

/// A declared template variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variable {
    pub sensitive: bool,
}

/// The builds a template defines, named as `-only` and `-except` name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builds {
    /// Builds whose names the template writes out: `TYPE.NAME` for a source in an unnamed
    /// `build` block, `BUILD.TYPE.NAME` in a named one (`NAME` is the source's
    /// `name = "..."` override when the build block gives one).
    pub known: BTreeSet<String>,
    /// Builds named only when Packer evaluates the template (`dynamic "source"`).
    pub open: Vec<OpenBuilds>,
}

/// Builds whose names Packer alone knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBuilds {
    /// What all their names start with (`flavors.null.`); empty when nothing is known.
    pub prefix: String,
    /// Why their names are not written out, and where.
    pub why: String,
}

impl Builds {
    /// Builds Packer alone can name, whatever they are called.
    pub fn unknown(why: String) -> Builds {
        Builds {
            known: BTreeSet::new(),
            open: vec![OpenBuilds {
                prefix: String::new(),
                why,
            }],
        }
    }

    /// The open builds a name could be one of.
    pub fn open_for(&self, name: &str) -> Option<&OpenBuilds> {
        self.open.iter().find(|open| name.starts_with(&open.prefix))
    }
}

/// A located, read template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The file or directory handed to `packer build`.
    pub path: Utf8PathBuf,
    /// Where Packer runs: the template's directory, as for a person running `packer build` there.
    pub workdir: Utf8PathBuf,
    pub format: Format,
    /// Declared variables; `None` when the template could not be read (Packer will say why).
    pub variables: Option<BTreeMap<String, Variable>>,
    /// Why the declarations could not be read, when they could not.
    pub unread_reason: Option<String>,
    /// Whether the template pins plugins (`packer { required_plugins { ... } }`), which only
    /// `packer init` (Packer 1.7+) installs.
    pub requires_plugins: bool,
    /// The builds it defines.
    pub builds: Builds,
    /// Var files Packer loads by itself, in the order it loads them: for a directory template,
    /// its `*.auto.pkrvars.hcl` then its `*.auto.pkrvars.json` files, each set in name order
    /// (Packer 1.6.6 loads none for a single-file template).
    pub auto_var_files: Vec<Utf8PathBuf>,
    /// The sha256 of each template file as it was read, named relative to `workdir`.
    pub digests: Vec<crate::provenance::FileDigest>,
}

impl Template {
    /// Whether the template declares `name`; unknown declarations count as declared.
    pub fn declares(&self, name: &str) -> bool {
        self.variables
            .as_ref()
            .is_none_or(|vars| vars.contains_key(name))
    }

    /// Names of variables the template marks sensitive.
    pub fn sensitive_variables(&self) -> impl Iterator<Item = &str> {
        self.variables
            .iter()
            .flatten()
            .filter(|(_, var)| var.sensitive)
            .map(|(name, _)| name.as_str())
    }
}

/// Resolves a path input as `packer_template` and `var_files` are resolved: `builtin:examples/...`
/// names a file of a bundled example, anything else is taken from `cwd`.
pub fn resolve_path(
    value: &str,
    cwd: &Utf8Path,
    cache_dir: &Utf8Path,
) -> anyhow::Result<Utf8PathBuf> {
    match value.strip_prefix(builtin::SCHEME) {
        Some(bundled) => {
            let parts: Vec<&str> = bundled.split('/').filter(|part| !part.is_empty()).collect();
            if parts.len() < 2 || parts.iter().any(|part| *part == ".." || *part == ".") {
                return Err(usage(format!(
                    "`{value}` must name a bundled example, e.g. `builtin:examples/ova/ova.pkr.hcl`"
                )));
            }
            let dir = builtin::materialize(&parts[..2].join("/"), &cache_dir.join("builtin"))?;
            Ok(dir.join(parts[2..].join("/")))
        }
        None => Ok(cwd.join(value)),
    }
}

/// Why a path input could not be read: the error, and how a relative path is taken.
pub fn unreadable(value: &str, path: &Utf8Path, err: &std::io::Error) -> String {
    format!(
        "cannot read {path}: {err}{}",
        if value.starts_with('/') || value.starts_with(builtin::SCHEME) {
            String::new()
        } else {
            " (a relative path is taken from the current directory)".to_owned()
        }
    )
}

/// Resolves the `packer_template` input (see [`resolve_path`]) and reads the template.
pub fn locate(value: &str, cwd: &Utf8Path, cache_dir: &Utf8Path) -> anyhow::Result<Template> {
    let path = resolve_path(value, cwd, cache_dir)?;
    let meta = std::fs::metadata(&path).map_err(|err| {
        usage(format!(
            "packer_template {value:?}: {}",
            unreadable(value, &path, &err)
        ))
    })?;
    if !meta.is_dir() && !meta.is_file() {
        // A FIFO or a device would block the read below, or never end.
        return Err(usage(format!(
            "packer_template {value:?}: {path} is not a regular file or a directory"
        )));
    }
    let path = path
        .canonicalize_utf8()
        .with_context(|| format!("resolving {path}"))?;
    let mut auto_var_files = Vec::new();
    let (format, workdir, files) = if meta.is_dir() {
        let files = hcl2_files(&path)?;
        auto_var_files = auto_var_files_in(&path)?;
        if files.is_empty() {
            return Err(usage(format!(
                "packer_template {value:?}: directory {path} holds no *.pkr.hcl or *.pkr.json file"
            )));
        }
        (Format::Hcl2, path.clone(), files)
    } else {
        let name = path.file_name().unwrap_or_default();
        let format = if name.ends_with(".pkr.hcl") || name.ends_with(".pkr.json") {
            Format::Hcl2
        } else if name.ends_with(".json") {
            Format::LegacyJson
        } else {
            return Err(usage(format!(
                "packer_template {value:?}: expected a *.pkr.hcl or *.pkr.json file, a legacy *.json template, or a directory"
            )));
        };
        let workdir = path
            .parent()
            .context("a file has a parent directory")?
            .to_owned();
        (format, workdir, vec![path.clone()])
    };

    let mut template = Template {
        path,
        workdir,
        format,
        variables: Some(BTreeMap::new()),
        unread_reason: None,
        requires_plugins: false,
        builds: Builds::default(),
        auto_var_files,
        digests: Vec::new(),
    };
    for file in files {
        let bytes = std::fs::read(&file).with_context(|| format!("reading template {file}"))?;
        let text = crate::profile::utf8_text(&bytes, file.as_str())?;
        template.digests.push(crate::provenance::FileDigest {
            path: file
                .strip_prefix(&template.workdir)
                .map_or_else(|_| file.clone(), Utf8Path::to_owned),
            sha256: crate::provenance::sha256_hex(text.as_bytes()),
        });
        let read = match (format, file.as_str().ends_with(".json")) {
            (Format::LegacyJson, _) => read_legacy_json(text),
            (Format::Hcl2, true) => read_hcl2_json(text),
            (Format::Hcl2, false) => read_hcl2(text),
        };
        match read {
            Ok(declared) => {
                template.requires_plugins |= declared.requires_plugins;
                if let Some(vars) = template.variables.as_mut() {
                    vars.extend(declared.variables);
                }
                template.builds.known.extend(declared.builds.known);
                template
                    .builds
                    .open
                    .extend(declared.builds.open.into_iter().map(|open| OpenBuilds {
                        why: format!("{} in {file}", open.why),
                        ..open
                    }));
            }
            Err(reason) => {
                // Packer reads templates more leniently than we might, and reports its own
                // errors with file and line: let it be the judge.
                template.variables = None;
                template.unread_reason = Some(format!("{file}: {reason}"));
            }
        }
    }
    if let Some(reason) = &template.unread_reason {
        template.builds = Builds::unknown(format!("sandboxer could not read {reason}"));
    }
    Ok(template)
}

/// A directory template's own var files, in the order Packer 1.6.6 loads them: every
/// `*.auto.pkrvars.hcl`, then every `*.auto.pkrvars.json`, each set in name order.
fn auto_var_files_in(dir: &Utf8Path) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let mut hcl = Vec::new();
    let mut json = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let path = entry.with_context(|| format!("reading {dir}"))?.into_path();
        let name = path.file_name().unwrap_or_default();
        if !path.is_file() {
            continue;
        }
        if name.ends_with(".auto.pkrvars.hcl") {
            hcl.push(path);
        } else if name.ends_with(".auto.pkrvars.json") {
            json.push(path);
        }
    }
    hcl.sort();
    json.sort();
    hcl.extend(json);
    Ok(hcl)
}

fn hcl2_files(dir: &Utf8Path) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let mut files = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let path = entry.with_context(|| format!("reading {dir}"))?.into_path();
        let name = path.file_name().unwrap_or_default();
        if (name.ends_with(".pkr.hcl") || name.ends_with(".pkr.json")) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[derive(Debug, Default)]
struct Declared {
    variables: BTreeMap<String, Variable>,
    requires_plugins: bool,
    builds: Builds,
}

fn read_hcl2(text: &str) -> Result<Declared, String> {
    let body = hcl::parse(text).map_err(|err| err.to_string())?;
    let mut declared = Declared::default();
    for block in body.blocks() {
        match block.identifier() {
            "variable" => {
                let Some(label) = block.labels().first() else {
                    continue;
                };
                let sensitive = block.body().attributes().any(|attr| {
                    attr.key() == "sensitive" && matches!(attr.expr(), hcl::Expression::Bool(true))
                });
                declared
                    .variables
                    .insert(label.as_str().to_owned(), Variable { sensitive });
            }
            // The older `variables { name = default }` form declares several at once.
            "variables" => {
                for attr in block.body().attributes() {
                    declared
                        .variables
                        .insert(attr.key().to_owned(), Variable::default());
                }
            }
            "packer" => {
                declared.requires_plugins |= block
                    .body()
                    .blocks()
                    .any(|inner| inner.identifier() == "required_plugins");
            }
            "build" => build_names(block.body(), &mut declared.builds),
            _ => {}
        }
    }
    Ok(declared)
}

/// Adds the names of one `build` block's builds, as Packer 1.6.6 names them for `-only`: the
/// block's `name` (when it has one), the source's type, and the source's name or its
/// `name = "..."` override. Builds whose names Packer alone can work out are added as open.
fn build_names(body: &hcl::Body, builds: &mut Builds) {
    let literal = |expr: &hcl::Expression| match expr {
        hcl::Expression::String(text) => Some(text.clone()),
        _ => None,
    };
    let mut open = |prefix: &str, why: &str| {
        builds.open.push(OpenBuilds {
            prefix: prefix.to_owned(),
            why: why.to_owned(),
        });
    };
    let prefix = match body.attributes().find(|attr| attr.key() == "name") {
        None => String::new(),
        Some(attr) => match literal(attr.expr()) {
            Some(name) => format!("{name}."),
            None => return open("", "a build block's `name` is an expression"),
        },
    };
    // "source.null.alpha" → ("null", "alpha")
    let source = |reference: &str| -> Option<(String, String)> {
        match reference.split('.').collect::<Vec<_>>().as_slice() {
            ["source", kind, name] => Some(((*kind).to_owned(), (*name).to_owned())),
            _ => None,
        }
    };
    if let Some(attr) = body.attributes().find(|attr| attr.key() == "sources") {
        let hcl::Expression::Array(items) = attr.expr() else {
            return open(&prefix, "a build block's `sources` is an expression");
        };
        for item in items {
            match literal(item).as_deref().and_then(source) {
                Some((kind, name)) => {
                    builds.known.insert(format!("{prefix}{kind}.{name}"));
                }
                None => open(&prefix, "a build block's `sources` holds an expression"),
            }
        }
    }
    for block in body.blocks() {
        let label = block.labels().first().map(|label| label.as_str());
        match block.identifier() {
            "source" => {
                let Some((kind, name)) = label.and_then(source) else {
                    continue;
                };
                match block.body().attributes().find(|attr| attr.key() == "name") {
                    None => {
                        builds.known.insert(format!("{prefix}{kind}.{name}"));
                    }
                    Some(attr) => match literal(attr.expr()) {
                        Some(name) => {
                            builds.known.insert(format!("{prefix}{kind}.{name}"));
                        }
                        None => open(
                            &format!("{prefix}{kind}."),
                            "a source block in a build block sets `name` with an expression",
                        ),
                    },
                }
            }
            "dynamic" if label == Some("source") => {
                // `labels = ["source.TYPE.NAME"]` gives the type; `content { name = ... }` the name.
                let kind = block
                    .body()
                    .attributes()
                    .find(|attr| attr.key() == "labels")
                    .and_then(|attr| match attr.expr() {
                        hcl::Expression::Array(items) => items.first().and_then(literal),
                        _ => None,
                    })
                    .and_then(|reference| source(&reference))
                    .map(|(kind, _)| format!("{kind}."))
                    .unwrap_or_default();
                let build = if prefix.is_empty() {
                    "an unnamed build block".to_owned()
                } else {
                    format!("build block `{}`", prefix.trim_end_matches('.'))
                };
                open(
                    &format!("{prefix}{kind}"),
                    &format!("{build} makes its sources with `dynamic \"source\"`"),
                );
            }
            _ => {}
        }
    }
}

fn read_hcl2_json(text: &str) -> Result<Declared, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
    let mut declared = Declared::default();
    if let Some(vars) = value.get("variable").and_then(|v| v.as_object()) {
        for (name, spec) in vars {
            let sensitive = spec
                .get("sensitive")
                .and_then(|s| s.as_bool())
                .unwrap_or(false);
            declared
                .variables
                .insert(name.clone(), Variable { sensitive });
        }
    }
    declared.requires_plugins = value
        .get("packer")
        .and_then(|p| p.get("required_plugins"))
        .is_some();
    if value.get("build").is_some() {
        declared.builds =
            Builds::unknown("sandboxer does not read the builds of *.pkr.json files".to_owned());
    }
    Ok(declared)
}

fn read_legacy_json(text: &str) -> Result<Declared, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
    let mut declared = Declared::default();
    if let Some(vars) = value.get("variables").and_then(|v| v.as_object()) {
        for name in vars.keys() {
            declared.variables.insert(name.clone(), Variable::default());
        }
    }
    if let Some(builders) = value.get("builders").and_then(|v| v.as_array()) {
        let names: Option<BTreeSet<String>> = builders
            .iter()
            .map(|builder| {
                builder
                    .get("name")
                    .or_else(|| builder.get("type"))
                    .and_then(|name| name.as_str())
                    .map(str::to_owned)
            })
            .collect();
        declared.builds = match names {
            Some(known) => Builds {
                known,
                open: Vec::new(),
            },
            None => Builds::unknown("a builder has no `name` or `type`".to_owned()),
        };
    }
    if let Some(sensitive) = value.get("sensitive-variables").and_then(|v| v.as_array()) {
        for name in sensitive.iter().filter_map(|name| name.as_str()) {
            declared
                .variables
                .entry(name.to_owned())
                .or_default()
                .sensitive = true;
        }
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl2_variables_sensitivity_and_plugins() {
        let declared = read_hcl2(
            r#"
packer {
  required_plugins {
    qemu = { version = ">= 1.0.0", source = "github.com/hashicorp/qemu" }
  }
}
variable "vm_name" { type = string }
variable "token" {
  type      = string
  sensitive = true
}
variables { legacy = "x" }
source "null" "a" { communicator = "none" }
build { sources = ["source.null.a"] }
"#,
        )
        .unwrap();
        assert!(declared.requires_plugins);
        assert_eq!(
            declared.variables.keys().collect::<Vec<_>>(),
            ["legacy", "token", "vm_name"]
        );
        assert!(declared.variables["token"].sensitive);
        assert!(!declared.variables["vm_name"].sensitive);
    }

    #[test]
    fn json_forms() {
        let legacy = read_legacy_json(
            r#"{"variables": {"a": "1", "pw": ""}, "sensitive-variables": ["pw"], "builders": []}"#,
        )
        .unwrap();
        assert!(legacy.variables["pw"].sensitive && !legacy.variables["a"].sensitive);
        let hcl_json =
            read_hcl2_json(r#"{"variable": {"pw": {"sensitive": true}, "b": {}}}"#).unwrap();
        assert!(hcl_json.variables["pw"].sensitive && !hcl_json.variables["b"].sensitive);
    }

    #[test]
    fn unreadable_templates_defer_to_packer() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(root.join("broken.pkr.hcl"), "variable \"x\" {\n  = oops\n").unwrap();
        let template = locate("broken.pkr.hcl", root, root).unwrap();
        assert!(template.variables.is_none());
        assert!(template.declares("anything"));
        assert!(template.unread_reason.unwrap().contains("broken.pkr.hcl"));
    }

    #[test]
    fn wrong_kinds_of_path_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(root.join("notes.txt"), "").unwrap();
        assert!(
            locate("notes.txt", root, root)
                .unwrap_err()
                .to_string()
                .contains("expected a *.pkr.hcl")
        );
        assert!(
            locate("missing.pkr.hcl", root, root)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
        assert!(
            locate(".", root, root)
                .unwrap_err()
                .to_string()
                .contains("holds no *.pkr.hcl")
        );
    }

    #[test]
    fn builds_are_named_as_packer_names_them() {
        let declared = read_hcl2(
            r#"
source "null" "alpha" { communicator = "none" }
source "null" "beta" { communicator = "none" }
build { sources = ["source.null.alpha", "source.null.beta"] }
build {
  name    = "deb"
  sources = ["source.null.alpha"]
  source "source.null.beta" {
    name = "renamed"
  }
}
build {
  name = "flavors"
  dynamic "source" {
    for_each = var.flavors
    labels   = ["source.null.alpha"]
    content {
      name = source.value
    }
  }
}
"#,
        )
        .unwrap();
        assert_eq!(
            declared.builds.known.iter().collect::<Vec<_>>(),
            [
                "deb.null.alpha",
                "deb.null.renamed",
                "null.alpha",
                "null.beta"
            ]
        );
        assert_eq!(declared.builds.open.len(), 1);
        assert_eq!(declared.builds.open[0].prefix, "flavors.null.");
        assert!(declared.builds.open_for("flavors.null.x").is_some());
        assert!(declared.builds.open_for("null.gamma").is_none());

        let unnamed = read_hcl2(
            "build {\n  dynamic \"source\" {\n    for_each = []\n    labels = [var.x]\n    content {}\n  }\n}\n",
        )
        .unwrap();
        assert!(unnamed.builds.open_for("anything.at.all").is_some());
    }

    #[test]
    fn legacy_builders_and_json_builds() {
        let legacy = read_legacy_json(
            r#"{"builders": [{"type": "null"}, {"type": "null", "name": "second"}]}"#,
        )
        .unwrap();
        assert_eq!(
            legacy.builds.known.iter().collect::<Vec<_>>(),
            ["null", "second"]
        );
        let json = read_hcl2_json(r#"{"build": {"sources": ["source.null.a"]}}"#).unwrap();
        assert!(json.builds.open_for("null.a").is_some());
    }

    #[test]
    fn a_directory_template_has_its_auto_var_files_in_packers_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        for file in [
            "t.pkr.hcl",
            "b.auto.pkrvars.hcl",
            "a.auto.pkrvars.json",
            "c.auto.pkrvars.hcl",
            "other.pkrvars.hcl",
        ] {
            std::fs::write(root.join(file), "").unwrap();
        }
        let names = |template: Template| -> Vec<String> {
            template
                .auto_var_files
                .iter()
                .map(|path| path.file_name().unwrap().to_owned())
                .collect()
        };
        let template = locate(".", root, root).unwrap();
        assert_eq!(
            names(template),
            [
                "b.auto.pkrvars.hcl",
                "c.auto.pkrvars.hcl",
                "a.auto.pkrvars.json"
            ]
        );
        // Packer 1.6.6 loads none for a single file.
        assert!(names(locate("t.pkr.hcl", root, root).unwrap()).is_empty());
    }
}
