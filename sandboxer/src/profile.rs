//! Profiles: the TOML schema, the search path, the built-in set, and located errors.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::duration::{Age, Ttl};
use crate::error::{did_you_mean, not_found, usage};
use crate::ext::{self, OnFailure};
use crate::inputs::{Kind, Layer, Origin, Setting, Value};

/// Where a profile was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(Utf8PathBuf),
    /// Compiled into the binary from the repository's `profiles/` directory.
    Builtin(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{path}"),
            Source::Builtin(path) => write!(f, "built-in ({path})"),
        }
    }
}

/// Where a profile's sandboxes run, and how many at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacementPolicy {
    /// The placement host; `local` is this machine. A host the pool file lists is reached as
    /// it says; any other name is this machine under that name. Empty with `pool`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Place on whichever host of the pool carries every one of `labels` and has a free slot.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pool: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// At most this many provisions at once on `host`, across processes; no limit when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<NonZeroU32>,
    /// The pool file this profile places on, instead of `$SANDBOXER_HOSTS` or the default;
    /// resolved from the profile's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_file: Option<Utf8PathBuf>,
    /// `file:line:column` of `pool_file`, for a missing file's error.
    #[serde(skip)]
    pub pool_file_location: String,
}

impl PlacementPolicy {
    /// What the policy places on, for messages: "`hv1`", or "the pool (labels kvm)".
    pub fn describe(&self) -> String {
        if !self.pool {
            return format!("`{}`", self.host);
        }
        if self.labels.is_empty() {
            "the pool".to_owned()
        } else {
            format!("the pool (labels {})", self.labels.join(", "))
        }
    }
}

/// `[placement]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlacementFile {
    host: Option<Spanned<String>>,
    pool: Option<Spanned<bool>>,
    labels: Option<Spanned<Vec<Spanned<String>>>>,
    max_concurrent: Option<Spanned<i64>>,
    pool_file: Option<Spanned<String>>,
}

fn local_host() -> String {
    "local".to_owned()
}

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub description: String,
    pub extension: String,
    pub ttl: Ttl,
    /// How long `gc` keeps a torn-down sandbox's record; `None`: the user's settings decide.
    pub retention: Option<Age>,
    pub placement: PlacementPolicy,
    /// Default inputs, each with the file location it came from.
    pub inputs: Layer,
    pub sensitive_inputs: Vec<String>,
    pub on_failure: OnFailure,
    pub source: Source,
    /// `file:line:column` of the `id` value, for reports about duplicates.
    pub id_location: String,
    /// `[state_hub]`: the workstream and task the sandbox's events belong to.
    pub state_hub: crate::hub::Labels,
}

impl Profile {
    /// The mode the profile selects: its last `mode` input, else its extension's default.
    pub fn mode(&self) -> Option<&str> {
        self.inputs
            .0
            .iter()
            .rev()
            .find(|setting| setting.name == crate::inputs::MODE)
            .map(|setting| setting.value.as_str())
            .or_else(|| ext::find(&self.extension)?.input_schema().default_mode())
    }

    /// Every input the profile's extension takes in the profile's mode that has a value, as the
    /// profile writes it (`{name}` references are expanded at create time), sensitive values
    /// redacted, each with where its value comes from (a list: where its first element is).
    pub fn input_rows(&self) -> Vec<InputRow> {
        let Some(extension) = ext::find(&self.extension) else {
            return Vec::new();
        };
        let schema = extension.input_schema();
        let mode = self.mode();
        let mut rows: BTreeMap<String, InputRow> = BTreeMap::new();
        for spec in schema.specs {
            if let Some(default) = spec.default
                && spec.applies_to(mode)
            {
                rows.insert(
                    spec.name.to_owned(),
                    InputRow {
                        name: spec.name.to_owned(),
                        value: Value::Single(default.to_owned()),
                        from: "extension default".to_owned(),
                    },
                );
            }
        }
        for Setting {
            name,
            value,
            origin,
            ..
        } in &self.inputs.0
        {
            let from = match origin {
                Origin::Profile(location) => location.clone(),
                Origin::Default => "extension default".to_owned(),
                Origin::CommandLine => "command line".to_owned(),
                Origin::Like(id) => format!("the record of {id}"),
            };
            let value = if self.sensitive_inputs.contains(name) {
                crate::inputs::REDACTED.to_owned()
            } else {
                value.clone()
            };
            match schema.kind(name) {
                Kind::Single => {
                    rows.insert(
                        name.clone(),
                        InputRow {
                            name: name.clone(),
                            value: Value::Single(value),
                            from,
                        },
                    );
                }
                Kind::List => {
                    let row = rows.entry(name.clone()).or_insert_with(|| InputRow {
                        name: name.clone(),
                        value: Value::List(Vec::new()),
                        from,
                    });
                    if let Value::List(items) = &mut row.value {
                        items.push(value);
                    }
                }
            }
        }
        rows.into_values().collect()
    }
}

/// One input as `profiles show` presents it.
#[derive(Debug, Clone, Serialize)]
pub struct InputRow {
    pub name: String,
    /// A string, or an array for a list input.
    pub value: Value,
    /// `file:line:column` in the profile, or "extension default".
    pub from: String,
}

/// A profile as `profiles list` and `profiles show` present it (their `--json` shape).
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub id: &'a str,
    pub description: &'a str,
    pub extension: &'a str,
    pub mode: Option<&'a str>,
    pub ttl: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    pub placement: &'a PlacementPolicy,
    pub on_failure: OnFailure,
    pub source: String,
    /// Definitions of the same id further down the search path, hidden by this one.
    pub shadows: Vec<String>,
}

impl Entry {
    pub fn summary(&self) -> Summary<'_> {
        let profile = &self.profile;
        Summary {
            id: &profile.id,
            description: &profile.description,
            extension: &profile.extension,
            mode: profile.mode(),
            ttl: profile.ttl.to_string(),
            retention: profile.retention.map(|retention| retention.to_string()),
            placement: &profile.placement,
            on_failure: profile.on_failure,
            source: profile.source.to_string(),
            shadows: self.shadowed.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The file format; `Profile` is what the rest of the program sees.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    id: Spanned<String>,
    description: String,
    extension: Spanned<String>,
    ttl: Ttl,
    #[serde(default)]
    retention: Option<Age>,
    #[serde(default)]
    placement: PlacementFile,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<InputValue>>,
    #[serde(default)]
    sensitive_inputs: Vec<Spanned<String>>,
    #[serde(default)]
    on_failure: OnFailure,
    #[serde(default)]
    state_hub: StateHubFile,
}

/// `[state_hub]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StateHubFile {
    workstream: Option<Spanned<String>>,
    task: Option<Spanned<String>>,
}

const PROFILE_KEYS: [&str; 11] = [
    "state_hub",
    "retention",
    "on_failure",
    "max_concurrent",
    "id",
    "description",
    "extension",
    "ttl",
    "placement",
    "inputs",
    "sensitive_inputs",
];

/// A scalar in TOML: a string, or a number or boolean taken as its text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

/// An input value in TOML: a scalar, or (for a list input) an array of scalars, each element
/// with its own location.
enum InputValue {
    Scalar(String),
    Array(Vec<Spanned<Scalar>>),
}

impl<'de> Deserialize<'de> for InputValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = InputValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean, or an array of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<InputValue, E> {
                ScalarVisitor.visit_str(v).map(|s| InputValue::Scalar(s.0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<InputValue, E> {
                ScalarVisitor.visit_i64(v).map(|s| InputValue::Scalar(s.0))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<InputValue, E> {
                ScalarVisitor.visit_u64(v).map(|s| InputValue::Scalar(s.0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<InputValue, E> {
                ScalarVisitor.visit_f64(v).map(|s| InputValue::Scalar(s.0))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<InputValue, E> {
                ScalarVisitor.visit_bool(v).map(|s| InputValue::Scalar(s.0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<InputValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Scalar>>()? {
                    items.push(item);
                }
                Ok(InputValue::Array(items))
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

/// Parses and validates one profile; errors name `display_path:line:column`.
pub fn parse(text: &str, display_path: &str, source: Source) -> anyhow::Result<Profile> {
    let at =
        |span: std::ops::Range<usize>| format!("{display_path}:{}", line_column(text, span.start));
    let file: ProfileFile = toml::from_str(text).map_err(|err| {
        let location = err.span().map_or_else(|| display_path.to_owned(), &at);
        usage(format!("{location}: {}", explain_toml_error(err.message())))
    })?;

    let id = file.id.get_ref();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(usage(format!(
            "{}: invalid profile id {id:?}: use letters, digits, `.`, `_` and `-`",
            at(file.id.span())
        )));
    }

    let max_concurrent = max_concurrent(file.placement.max_concurrent.as_ref(), &at)?;
    let placement = placement(file.placement, max_concurrent, &source, &at)?;

    let extension_id = file.extension.get_ref();
    let Some(extension) = ext::find(extension_id) else {
        // Compare without the shared `ext.` prefix, which would make every id look close.
        let bare = |id: &'static str| id.strip_prefix("ext.").unwrap_or(id);
        let hint = did_you_mean(
            extension_id.strip_prefix("ext.").unwrap_or(extension_id),
            ext::ids().map(bare),
        )
        .map(|near| format!("ext.{near}"))
        .map(|near| format!("; did you mean `{near}`?"))
        .unwrap_or_default();
        return Err(usage(format!(
            "{}: unknown extension `{extension_id}`{hint} (available: {})",
            at(file.extension.span()),
            ext::ids().collect::<Vec<_>>().join(", ")
        )));
    };

    let schema = extension.input_schema();
    let mut inputs = Layer::default();
    for (name, value) in file.inputs {
        let span = value.span();
        match value.into_inner() {
            InputValue::Scalar(text) => {
                inputs
                    .0
                    .push(Setting::new(name, text, Origin::Profile(at(span))));
            }
            InputValue::Array(items) => {
                if schema.accepts(&name) && schema.kind(&name) != Kind::List {
                    return Err(usage(format!(
                        "{}: input `{name}` takes one value, not an array",
                        at(span)
                    )));
                }
                for item in items {
                    let origin = Origin::Profile(at(item.span()));
                    inputs
                        .0
                        .push(Setting::new(name.clone(), item.into_inner().0, origin));
                }
            }
        }
    }
    // A top-level key written after `[inputs]` lands in it: say so rather than "unknown input".
    if let Some(misplaced) = inputs.0.iter().find(|setting| {
        PROFILE_KEYS.contains(&setting.name.as_str()) && !schema.accepts(&setting.name)
    }) {
        return Err(usage(format!(
            "{}: `{}` is a top-level key, but it is written after `[inputs]`: top-level keys must come before the first [table]",
            misplaced.origin.describe(),
            misplaced.name
        )));
    }
    // Reject unknown inputs now, so `profiles list` and `profiles show` catch them too.
    crate::inputs::check(extension_id, schema, &inputs)?;

    let mut sensitive_inputs = Vec::new();
    for name in file.sensitive_inputs {
        let accepted = schema.spec(name.get_ref()).is_some()
            || schema
                .free_form
                .is_some_and(|(prefix, _)| name.get_ref().starts_with(prefix));
        if !accepted {
            return Err(usage(format!(
                "{}: `sensitive_inputs` names `{}`, which {extension_id} does not accept",
                at(name.span()),
                name.get_ref()
            )));
        }
        sensitive_inputs.push(name.into_inner());
    }

    let mut state_hub = crate::hub::Labels::default();
    for (key, value, slot) in [
        (
            "workstream",
            file.state_hub.workstream,
            &mut state_hub.workstream,
        ),
        ("task", file.state_hub.task, &mut state_hub.task),
    ] {
        if let Some(value) = value {
            if value.get_ref().trim().is_empty() {
                return Err(usage(format!(
                    "{}: [state_hub] {key} is empty; leave it out instead",
                    at(value.span())
                )));
            }
            *slot = Some(value.into_inner());
        }
    }

    let id_location = at(file.id.span());
    Ok(Profile {
        state_hub,
        id: file.id.into_inner(),
        description: file.description,
        extension: file.extension.into_inner(),
        ttl: file.ttl,
        retention: file.retention,
        placement,
        inputs,
        sensitive_inputs,
        on_failure: file.on_failure,
        source,
        id_location,
    })
}

/// Checks `[placement]`: a `host`, or `pool = true` with optional `labels`; a `pool_file`
/// resolved from the profile's directory.
fn placement(
    file: PlacementFile,
    max_concurrent: Option<NonZeroU32>,
    source: &Source,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> anyhow::Result<PlacementPolicy> {
    let pool = file.pool.as_ref().is_some_and(|pool| *pool.get_ref());
    let host = match (file.host, pool) {
        (Some(host), true) => {
            return Err(usage(format!(
                "{}: `host` and `pool = true` both say where to place: name one host, or let the pool choose",
                at(host.span())
            )));
        }
        (None, true) => String::new(),
        (None, false) => local_host(),
        (Some(host), false) => {
            let name = host.get_ref();
            if crate::names::check_name(name).is_err() {
                return Err(usage(format!(
                    "{}: invalid placement host {name:?}: use letters, digits, `.`, `_` and `-`, not starting with `-` or `.`",
                    at(host.span())
                )));
            }
            host.into_inner()
        }
    };
    let mut labels = Vec::new();
    if let Some(written) = file.labels {
        if !pool {
            return Err(usage(format!(
                "{}: `labels` choose among the pool's hosts: add `pool = true`, or name one `host`",
                at(written.span())
            )));
        }
        for label in written.into_inner() {
            crate::names::check_name(label.get_ref()).map_err(|problem| {
                usage(format!(
                    "{}: label {:?} {problem}",
                    at(label.span()),
                    label.get_ref()
                ))
            })?;
            labels.push(label.into_inner());
        }
    }
    let (pool_file, pool_file_location) = match file.pool_file {
        None => (None, String::new()),
        Some(path) => {
            let location = at(path.span());
            let value = path.into_inner();
            if value.is_empty() {
                return Err(usage(format!("{location}: pool_file is empty")));
            }
            let path = Utf8PathBuf::from(value);
            let resolved = match source {
                Source::File(profile) if path.is_relative() => profile
                    .parent()
                    .map_or_else(|| path.clone(), |dir| dir.join(&path)),
                _ => path,
            };
            (Some(resolved), location)
        }
    };
    Ok(PlacementPolicy {
        host,
        pool,
        labels,
        max_concurrent,
        pool_file,
        pool_file_location,
    })
}

/// Adds a "did you mean" to serde's unknown-field messages.
fn explain_toml_error(message: &str) -> String {
    let message = message.trim_end();
    if message.contains("expected a string, number or boolean, or an array") {
        return format!(
            "{message}; top-level keys must come before the first [table], and dotted input names must be quoted (\"var.disk_size\" = \"1G\")"
        );
    }
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((field, _)) = rest.split_once('`') else {
        return message.to_owned();
    };
    if !message.contains("expected one of") {
        // serde already named the one field it expects.
        return message.to_owned();
    }
    let candidates = PROFILE_KEYS
        .iter()
        .copied()
        .chain(["host", "pool", "labels", "pool_file"]);
    match did_you_mean(field, candidates) {
        Some(near) => format!("{message}; did you mean `{near}`?"),
        None => message.to_owned(),
    }
}

/// The text of a file read as bytes; invalid UTF-8 is a usage error located at its first bad byte.
pub fn utf8_text<'a>(bytes: &'a [u8], display_path: &str) -> anyhow::Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|err| {
        let valid = &bytes[..err.valid_up_to()];
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        usage(format!(
            "{display_path}:{}: not UTF-8 (byte 0x{:02x}); save the file as UTF-8",
            line_column(valid, valid.len()),
            bytes[err.valid_up_to()]
        ))
    })
}

/// A `max_concurrent` setting (a profile's placement, a build host's): a whole number of at least
/// 1, or no limit when absent; `at` locates a bad one.
pub(crate) fn max_concurrent(
    setting: Option<&Spanned<i64>>,
    at: &impl Fn(std::ops::Range<usize>) -> String,
) -> anyhow::Result<Option<NonZeroU32>> {
    let Some(max) = setting else {
        return Ok(None);
    };
    u32::try_from(*max.get_ref())
        .ok()
        .and_then(NonZeroU32::new)
        .map(Some)
        .ok_or_else(|| {
            usage(format!(
                "{}: max_concurrent must be a whole number of at least 1 (leave it out for no limit)",
                at(max.span())
            ))
        })
}

/// 1-based `line:column` of a byte offset; columns count characters.
pub fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{column}")
}

/// The directories searched for profiles, in order; the built-in set always comes last.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    /// `(directory, must_exist)`: directories the user named must exist; default ones may not.
    dirs: Vec<(Utf8PathBuf, bool)>,
}

impl SearchPath {
    /// `--profiles-dir` dirs, then `$SANDBOXER_PROFILES`, then `./profiles`, then the user config dir.
    pub fn standard(
        explicit: &[Utf8PathBuf],
        env_list: Option<&str>,
        config_dir: Option<&Utf8Path>,
    ) -> SearchPath {
        let mut dirs: Vec<(Utf8PathBuf, bool)> =
            explicit.iter().map(|dir| (dir.clone(), true)).collect();
        if let Some(list) = env_list {
            dirs.extend(
                list.split(':')
                    .filter(|dir| !dir.is_empty())
                    .map(|dir| (dir.into(), true)),
            );
        }
        dirs.push(("profiles".into(), false));
        if let Some(config_dir) = config_dir {
            dirs.push((config_dir.join("sandboxer/profiles"), false));
        }
        // A directory named twice (by a flag and the environment, say) is searched once, at
        // its first place: otherwise its profiles would shadow themselves.
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|(dir, _)| {
            seen.insert(dir.canonicalize_utf8().unwrap_or_else(|_| dir.clone()))
        });
        SearchPath { dirs }
    }
}

/// One profile id and every definition of it, winner first.
#[derive(Debug)]
pub struct Entry {
    pub profile: Profile,
    /// Definitions of the same id further down the search path, which `profile` hides.
    pub shadowed: Vec<Source>,
}

/// Every profile visible through a search path.
#[derive(Debug)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
}

impl Catalog {
    /// Reads every `*.toml` in the search path, then the built-ins; any invalid file is an error.
    pub fn load(search: &SearchPath) -> anyhow::Result<Catalog> {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for (dir, must_exist) in &search.dirs {
            if !dir.is_dir() {
                if *must_exist {
                    return Err(usage(format!("profile directory {dir} does not exist")));
                }
                continue;
            }
            let mut in_this_dir: BTreeMap<String, String> = BTreeMap::new();
            for path in toml_files(dir)? {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading profile {path}"))?;
                let text = utf8_text(&bytes, path.as_str())?;
                let profile = parse(text, path.as_str(), Source::File(path.clone()))?;
                if let Some(first) =
                    in_this_dir.insert(profile.id.clone(), profile.id_location.clone())
                {
                    return Err(usage(format!(
                        "{}: profile `{}` is already defined at {first}; ids must be unique within a directory",
                        profile.id_location, profile.id
                    )));
                }
                add(&mut entries, profile);
            }
        }
        for (path, text) in crate::builtin::profiles() {
            let profile = parse(text, &format!("built-in {path}"), Source::Builtin(path))?;
            add(&mut entries, profile);
        }
        Ok(Catalog { entries })
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Finds a profile by id; `NAME` also finds `profile.NAME`.
    pub fn find(&self, name: &str) -> anyhow::Result<&Entry> {
        if let Some(entry) = self
            .entries
            .get(name)
            .or_else(|| self.entries.get(&format!("profile.{name}")))
        {
            return Ok(entry);
        }
        let short = |id: &'_ str| id.strip_prefix("profile.").unwrap_or(id).to_owned();
        let wanted = short(name);
        let shorts: Vec<String> = self.entries.keys().map(|id| short(id)).collect();
        let hint = did_you_mean(&wanted, shorts.iter().map(String::as_str))
            .and_then(|near| self.entries.keys().find(|id| short(id) == near))
            .map(|near| format!("; did you mean `{near}`?"))
            .unwrap_or_default();
        let known = crate::error::some_candidates_by(
            &wanted,
            "known",
            self.entries.keys().map(String::as_str),
            |id| id.strip_prefix("profile.").unwrap_or(id),
            "`sandboxer profiles list`",
        );
        Err(not_found(format!("no profile `{name}`{hint} ({known})")))
    }
}

fn add(entries: &mut BTreeMap<String, Entry>, profile: Profile) {
    match entries.get_mut(&profile.id) {
        Some(entry) => entry.shadowed.push(profile.source),
        None => {
            entries.insert(
                profile.id.clone(),
                Entry {
                    profile,
                    shadowed: Vec::new(),
                },
            );
        }
    }
}

fn toml_files(dir: &Utf8Path) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let mut files = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading profile directory {dir}"))?
    {
        let entry = entry.with_context(|| format!("reading profile directory {dir}"))?;
        let path = entry.path();
        if path.extension() == Some("toml") && path.is_file() {
            files.push(path.to_owned());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> anyhow::Result<Profile> {
        parse(text, "p.toml", Source::File("p.toml".into()))
    }

    const GOOD: &str = r#"
id = "profile.t"
description = "test"
extension = "ext.vm-packer"
ttl = "2h"

[inputs]
mode = "build"
vm_name = "t"
"#;

    #[test]
    fn a_good_profile_parses() {
        let profile = parse_text(GOOD).unwrap();
        assert_eq!(profile.id, "profile.t");
        assert_eq!(profile.placement.host, "local");
        assert_eq!(profile.ttl.to_string(), "2h");
        assert_eq!(
            profile.inputs.0[0].origin,
            Origin::Profile("p.toml:8:8".into())
        );
    }

    #[test]
    fn unknown_keys_are_located_with_a_suggestion() {
        let err = parse_text(&GOOD.replace("ttl =", "ttll =")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("p.toml:5:1: unknown field `ttll`"),
            "{text}"
        );
        assert!(text.ends_with("did you mean `ttl`?"), "{text}");
    }

    #[test]
    fn bad_ttls_and_types_are_located() {
        let err = parse_text(&GOOD.replace("\"2h\"", "\"2x\""))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:5:7: invalid TTL"), "{err}");
        let err = parse_text(&GOOD.replace("\"2h\"", "5"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:5:7:"), "{err}");
    }

    #[test]
    fn unknown_extension_and_input_are_located() {
        let err = parse_text(&GOOD.replace("ext.vm-packer", "ext.vm-pakcer"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "p.toml:4:13: unknown extension `ext.vm-pakcer`; did you mean `ext.vm-packer`?"
            ),
            "{err}"
        );
        let err = parse_text(&GOOD.replace("vm_name =", "vm_nam ="))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:9:10: unknown input `vm_nam`; did you mean `vm_name`?"),
            "{err}"
        );
    }

    #[test]
    fn list_inputs_take_arrays_with_a_location_per_element() {
        let profile = parse_text(&format!(
            "{GOOD}var_files = [\"a.pkrvars.hcl\",\n  \"b.pkrvars.json\"]\nonly = \"null.a\"\n"
        ))
        .unwrap();
        let var_files: Vec<(&str, &Origin)> = profile
            .inputs
            .0
            .iter()
            .filter(|setting| setting.name == "var_files")
            .map(|setting| (setting.value.as_str(), &setting.origin))
            .collect();
        assert_eq!(
            var_files,
            [
                ("a.pkrvars.hcl", &Origin::Profile("p.toml:10:14".into())),
                ("b.pkrvars.json", &Origin::Profile("p.toml:11:3".into())),
            ]
        );
        let rows = profile.input_rows();
        let row = |name: &str| rows.iter().find(|row| row.name == name).unwrap();
        assert_eq!(
            row("var_files").value,
            Value::List(vec!["a.pkrvars.hcl".into(), "b.pkrvars.json".into()])
        );
        assert_eq!(row("var_files").from, "p.toml:10:14");
        // A single value for a list input is a one-element list.
        assert_eq!(row("only").value, Value::List(vec!["null.a".into()]));

        let err = parse_text(&GOOD.replace("vm_name = \"t\"", "vm_name = [\"t\"]"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "p.toml:9:11: input `vm_name` takes one value, not an array"
        );
        let err = parse_text(&format!("{GOOD}var_files = [[\"a\"]]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:10:14: invalid type: sequence"),
            "{err}"
        );
    }

    #[test]
    fn a_top_level_key_after_inputs_is_explained() {
        let err = parse_text(&format!("{GOOD}on_failure = \"keep\"\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "p.toml:10:14: `on_failure` is a top-level key, but it is written after `[inputs]`: top-level keys must come before the first [table]"
        );
    }

    #[test]
    fn line_columns_count_characters() {
        assert_eq!(line_column("ab\ncdé f", 8), "2:5");
        assert_eq!(line_column("x", 0), "1:1");
    }

    #[test]
    fn every_builtin_profile_is_valid() {
        let catalog = Catalog::load(&SearchPath::default()).unwrap();
        let ids: Vec<_> = catalog
            .entries()
            .map(|entry| entry.profile.id.as_str())
            .collect();
        assert!(ids.contains(&"profile.vm-packer-build"), "{ids:?}");
        assert!(ids.contains(&"profile.vm-haskell-build"), "{ids:?}");
    }
}
