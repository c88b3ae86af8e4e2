//! Input schemas, layering (extension defaults < profile < command line), list inputs,
//! validation and sensitivity.
//!
//! An input holds one value, or — when its spec says [`Kind::List`] — a list of values. A later
//! layer replaces a single value. A list is built in order within a layer; a layer's first
//! `NAME=VALUE` starts a new list that replaces the one the layers below built, and
//! `NAME+=VALUE` (command line only) adds to that one instead. An empty value adds no element, so
//! `--input NAME=` empties a list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::{did_you_mean, usage};

/// Checks one input value; the error says what is wrong with it (the caller says where).
pub type Validator = fn(&str) -> Result<(), String>;

/// The shape of an input's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One value; a later layer replaces it.
    Single,
    /// A list of values, in order (a TOML array in a profile, a repeated `--input`).
    List,
}

/// One input an extension accepts.
#[derive(Debug)]
pub struct InputSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// Must be present and not empty, in the modes the input applies to.
    pub required: bool,
    /// The modes (values of the `mode` input) the input applies to; empty means every mode.
    pub modes: &'static [&'static str],
    /// The value when no layer gives one; list inputs have none (they start empty).
    pub default: Option<&'static str>,
    /// When not empty, the only values accepted (for a list, for each element).
    pub allowed: &'static [&'static str],
    /// A check every value (every element of a list) must pass, such as a name pattern.
    pub validate: Option<Validator>,
    pub description: &'static str,
}

impl InputSpec {
    /// An optional single-valued input for every mode, with no default and no checks; the base
    /// of a spec literal (`InputSpec { required: true, ..InputSpec::new("name", "what it is") }`).
    pub const fn new(name: &'static str, description: &'static str) -> InputSpec {
        InputSpec {
            name,
            kind: Kind::Single,
            required: false,
            modes: &[],
            default: None,
            allowed: &[],
            validate: None,
            description,
        }
    }

    /// Whether the input means anything in `mode` (`None`: the extension has no modes).
    pub fn applies_to(&self, mode: Option<&str>) -> bool {
        self.modes.is_empty() || mode.is_some_and(|mode| self.modes.contains(&mode))
    }
}

/// The input that selects an extension's mode, when it has modes.
pub const MODE: &str = "mode";

/// Everything an extension accepts: named inputs plus, optionally, a free-form `prefix.NAME` family.
#[derive(Debug)]
pub struct InputSchema {
    pub specs: &'static [InputSpec],
    /// e.g. `("var.", "passed to Packer as -var NAME=value")`; free-form inputs take one value.
    pub free_form: Option<(&'static str, &'static str)>,
}

impl InputSchema {
    pub fn spec(&self, name: &str) -> Option<&InputSpec> {
        self.specs.iter().find(|spec| spec.name == name)
    }

    /// The mode the schema chooses when no layer names one.
    pub fn default_mode(&self) -> Option<&'static str> {
        self.spec(MODE).and_then(|spec| spec.default)
    }

    /// Whether `name` is an input of the schema: a named one, or one of the free-form family.
    pub fn accepts(&self, name: &str) -> bool {
        self.spec(name).is_some()
            || self
                .free_form
                .is_some_and(|(prefix, _)| name.len() > prefix.len() && name.starts_with(prefix))
    }

    /// The shape of input `name`'s value; free-form and unknown inputs hold one value.
    pub fn kind(&self, name: &str) -> Kind {
        self.spec(name).map_or(Kind::Single, |spec| spec.kind)
    }

    fn list_names(&self) -> Vec<&'static str> {
        self.specs
            .iter()
            .filter(|spec| spec.kind == Kind::List)
            .map(|spec| spec.name)
            .collect()
    }

    /// A table of what the extension accepts, for error messages and `profiles show`.
    pub fn describe(&self) -> String {
        self.describe_specs(self.specs.iter(), true)
    }

    /// The table of [`InputSchema::describe`] for the inputs that apply in `mode` only (with no
    /// modes column: they all apply), then a line naming what other modes take instead.
    pub fn describe_mode(&self, mode: Option<&str>) -> String {
        let mut out = self.describe_specs(
            self.specs.iter().filter(|spec| spec.applies_to(mode)),
            false,
        );
        let mut others: Vec<&str> = self
            .specs
            .iter()
            .flat_map(|spec| spec.modes.iter().copied())
            .filter(|other| Some(*other) != mode)
            .collect();
        others.sort_unstable();
        others.dedup();
        for other in others {
            let names: Vec<&str> = self
                .specs
                .iter()
                .filter(|spec| spec.modes.contains(&other) && !spec.applies_to(mode))
                .map(|spec| spec.name)
                .collect();
            if !names.is_empty() {
                let _ = writeln!(out, "  (in {other} mode instead: {})", names.join(", "));
            }
        }
        out
    }

    fn describe_specs<'a>(
        &self,
        specs: impl Iterator<Item = &'a InputSpec>,
        with_modes: bool,
    ) -> String {
        let mut out = String::new();
        for spec in specs {
            let mut notes = Vec::new();
            if spec.kind == Kind::List {
                notes.push("list".to_owned());
            }
            if spec.required {
                notes.push("required".to_owned());
            }
            if with_modes && !spec.modes.is_empty() {
                notes.push(format!("{} mode", spec.modes.join("|")));
            }
            if !spec.allowed.is_empty() {
                notes.push(spec.allowed.join("|"));
            }
            if let Some(default) = spec.default {
                notes.push(format!("default {default:?}"));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", notes.join(", "))
            };
            let _ = writeln!(out, "  {:<16} {}{notes}", spec.name, spec.description);
        }
        if let Some((prefix, description)) = self.free_form {
            let _ = writeln!(out, "  {:<16} {description}", format!("{prefix}NAME"));
        }
        out
    }
}

/// Where an input's value came from, for error messages and `profiles show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// `file:line:column` of the value in the profile.
    Profile(String),
    CommandLine,
    /// Replayed from the record of the sandbox with this id (`create --like`).
    Like(String),
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Default => "the extension's default".to_owned(),
            Origin::Profile(location) => location.clone(),
            Origin::CommandLine => "--input".to_owned(),
            Origin::Like(id) => format!("the record of {id} (--like)"),
        }
    }
}

/// One value a layer gives an input: `NAME=VALUE`, or `NAME+=VALUE` to add to a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub origin: Origin,
    /// `NAME+=VALUE`: adds to the list the layers below built instead of replacing it.
    pub append: bool,
}

impl Setting {
    /// `NAME=VALUE`.
    pub fn new(name: impl Into<String>, value: impl Into<String>, origin: Origin) -> Setting {
        Setting {
            name: name.into(),
            value: value.into(),
            origin,
            append: false,
        }
    }
}

/// One layer of raw inputs, in the order they were given; a list input may appear many times.
#[derive(Debug, Default, Clone)]
pub struct Layer(pub Vec<Setting>);

/// An input's value as records and `--json` show it: a string, or an array for a list input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Single(String),
    List(Vec<String>),
}

impl Value {
    /// As a profile would write it: `"text"`, or `["a", "b"]`.
    pub fn quoted(&self) -> String {
        match self {
            Value::Single(text) => format!("{text:?}"),
            Value::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|item| format!("{item:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::fmt::Display for Value {
    /// A single value as it is; a list as a profile would write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Single(text) => f.write_str(text),
            Value::List(_) => f.write_str(&self.quoted()),
        }
    }
}

/// An input's value after layering, each value with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    Single(String, Origin),
    List(Vec<(String, Origin)>),
}

impl Resolved {
    fn values(&self) -> Vec<&str> {
        match self {
            Resolved::Single(value, _) => vec![value.as_str()],
            Resolved::List(items) => items.iter().map(|(value, _)| value.as_str()).collect(),
        }
    }

    fn values_mut(&mut self) -> Vec<(&mut String, &Origin)> {
        match self {
            Resolved::Single(value, origin) => vec![(value, &*origin)],
            Resolved::List(items) => items
                .iter_mut()
                .map(|(value, origin)| (value, &*origin))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Resolved::Single(value, _) => value.trim().is_empty(),
            Resolved::List(items) => items.is_empty(),
        }
    }
}

/// Inputs after layering, interpolation and validation.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    values: BTreeMap<String, Resolved>,
    sensitive: BTreeSet<String>,
    /// For each input, the inputs whose values it took in through `{name}` references.
    references: BTreeMap<String, BTreeSet<String>>,
}

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

impl Inputs {
    /// The value of a single-valued input.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.values.get(name)? {
            Resolved::Single(value, _) => Some(value),
            Resolved::List(_) => None,
        }
    }

    /// Where a single-valued input's value came from.
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        match self.values.get(name)? {
            Resolved::Single(_, origin) => Some(origin),
            Resolved::List(_) => None,
        }
    }

    /// The elements of a list input, in order, each with where it came from; empty when the
    /// input has none (or is not a list).
    pub fn list(&self, name: &str) -> &[(String, Origin)] {
        match self.values.get(name) {
            Some(Resolved::List(items)) => items,
            _ => &[],
        }
    }

    /// All inputs whose name starts with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.values
            .iter()
            .filter_map(move |(name, value)| match value {
                Resolved::Single(value, _) => Some((name.strip_prefix(prefix)?, value.as_str())),
                Resolved::List(_) => None,
            })
    }

    /// The mode these inputs select (`None` when the extension has no modes).
    pub fn mode(&self) -> Option<&str> {
        self.get(MODE)
    }

    /// Marks an input sensitive, and with it every input whose value took it in through a
    /// `{name}` reference: a value built from a secret gives the secret away.
    pub fn mark_sensitive(&mut self, name: &str) {
        if !self.sensitive.insert(name.to_owned()) {
            return;
        }
        let dependents: Vec<String> = self
            .references
            .iter()
            .filter(|(_, sources)| sources.contains(name))
            .map(|(dependent, _)| dependent.clone())
            .collect();
        for dependent in dependents {
            self.mark_sensitive(&dependent);
        }
    }

    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.contains(name)
    }

    /// The values of sensitive inputs (every element of a list): what a redactor must hide.
    pub fn secret_values(&self) -> Vec<String> {
        self.sensitive
            .iter()
            .filter_map(|name| self.values.get(name))
            .flat_map(Resolved::values)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Every input, sensitive values replaced by [`REDACTED`]: what records and JSON may hold.
    pub fn redacted(&self) -> BTreeMap<String, Value> {
        self.values
            .iter()
            .map(|(name, resolved)| {
                let shown = |value: &str| {
                    if self.is_sensitive(name) {
                        REDACTED.to_owned()
                    } else {
                        value.to_owned()
                    }
                };
                let value = match resolved {
                    Resolved::Single(value, _) => Value::Single(shown(value)),
                    Resolved::List(items) => {
                        Value::List(items.iter().map(|(value, _)| shown(value)).collect())
                    }
                };
                (name.clone(), value)
            })
            .collect()
    }
}

/// `--input NAME=VALUE`, or `NAME+=VALUE` to add to a list input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: String,
    pub append: bool,
}

impl Assignment {
    /// The assignment as a command-line setting.
    pub fn to_setting(&self) -> Setting {
        Setting {
            name: self.name.clone(),
            value: self.value.clone(),
            origin: Origin::CommandLine,
            append: self.append,
        }
    }
}

/// Parses `NAME=VALUE` or `NAME+=VALUE` from `--input`.
pub fn parse_assignment(text: &str) -> Result<Assignment, String> {
    match text.split_once('=') {
        Some((key, value)) => {
            let (key, append) = match key.strip_suffix('+') {
                Some(key) => (key, true),
                None => (key, false),
            };
            let name = key.trim();
            if name.is_empty() {
                return Err(format!("expected KEY=VALUE or KEY+=VALUE, got {text:?}"));
            }
            Ok(Assignment {
                name: name.to_owned(),
                value: value.to_owned(),
                append,
            })
        }
        None => Err(format!("expected KEY=VALUE or KEY+=VALUE, got {text:?}")),
    }
}

/// Layers `profile` over the schema's defaults and `command_line` over both (see the module's
/// rule for lists), expands `{name}` references between inputs, and checks the result against
/// the schema.
pub fn resolve(
    extension_id: &str,
    schema: &InputSchema,
    profile: &Layer,
    command_line: &Layer,
    sensitive: &[String],
) -> anyhow::Result<Inputs> {
    resolve_layers(extension_id, schema, &[profile, command_line], sensitive)
}

/// [`resolve`] with any number of layers, lowest first (`create --like` puts the replayed
/// record's inputs between the profile and the command line).
pub fn resolve_layers(
    extension_id: &str,
    schema: &InputSchema,
    layers: &[&Layer],
    sensitive: &[String],
) -> anyhow::Result<Inputs> {
    // The mode decides which defaults apply: a build does not need attach mode's timeout.
    let chosen_mode = layers
        .iter()
        .rev()
        .find_map(|layer| layer.0.iter().rev().find(|setting| setting.name == MODE))
        .map(|setting| setting.value.as_str())
        .or_else(|| schema.default_mode());
    let mut values: BTreeMap<String, Resolved> = BTreeMap::new();
    for spec in schema.specs {
        if let Some(default) = spec.default
            && spec.kind == Kind::Single
            && spec.applies_to(chosen_mode)
        {
            values.insert(
                spec.name.to_owned(),
                Resolved::Single(default.to_owned(), Origin::Default),
            );
        }
    }
    for layer in layers {
        check(extension_id, schema, layer)?;
    }
    for layer in layers {
        // List inputs this layer has started a list of its own for.
        let mut started: BTreeSet<&str> = BTreeSet::new();
        for setting in &layer.0 {
            let Setting {
                name,
                value,
                origin,
                append,
            } = setting;
            match schema.kind(name) {
                Kind::Single => {
                    values.insert(
                        name.clone(),
                        Resolved::Single(value.clone(), origin.clone()),
                    );
                }
                Kind::List => {
                    let fresh = !append && started.insert(name);
                    let entry = values
                        .entry(name.clone())
                        .or_insert_with(|| Resolved::List(Vec::new()));
                    if fresh || !matches!(entry, Resolved::List(_)) {
                        *entry = Resolved::List(Vec::new());
                    }
                    if let Resolved::List(items) = entry
                        && !value.is_empty()
                    {
                        items.push((value.clone(), origin.clone()));
                    }
                }
            }
        }
    }

    let snapshot: BTreeMap<String, String> = values
        .iter()
        .filter_map(|(name, resolved)| match resolved {
            Resolved::Single(value, _) => Some((name.clone(), value.clone())),
            Resolved::List(_) => None,
        })
        .collect();
    let lists = schema.list_names();
    let mut references: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, resolved) in values.iter_mut() {
        for (value, origin) in resolved.values_mut() {
            // Only profile values are templates: a value typed on the command line is taken
            // literally, and so is a recorded one (it was expanded when it was recorded).
            if matches!(origin, Origin::CommandLine | Origin::Like(_)) {
                continue;
            }
            *value = interpolate(value, |reference| {
                if lists.contains(&reference) {
                    return Err(format!(
                        "`{{{reference}}}` refers to a list input; a reference needs an input with one value"
                    ));
                }
                let found = snapshot.get(reference).map(String::as_str).ok_or_else(|| {
                    if schema.accepts(reference) {
                        format!(
                            "`{{{reference}}}` has no value; give it with --input {reference}=VALUE"
                        )
                    } else {
                        format!(
                            "`{{{reference}}}` refers to no input (write `{{{{` for a literal brace)"
                        )
                    }
                })?;
                references
                    .entry(name.clone())
                    .or_default()
                    .insert(reference.to_owned());
                Ok(found)
            })
            .map_err(|message| {
                usage(format!("{}: input `{name}`: {message}", origin.describe()))
            })?;
        }
    }

    // Values as given first, then values made from `{references}`: a bad value is reported as
    // the input it was typed for, not as another input built from it.
    let (derived, given): (Vec<&InputSpec>, Vec<&InputSpec>) = schema
        .specs
        .iter()
        .partition(|spec| references.contains_key(spec.name));
    for spec in given.into_iter().chain(derived) {
        let Some(resolved) = values.get(spec.name) else {
            continue;
        };
        let items: Vec<(&str, &Origin)> = match resolved {
            Resolved::Single(value, origin) => vec![(value, origin)],
            Resolved::List(items) => items
                .iter()
                .map(|(value, origin)| (value.as_str(), origin))
                .collect(),
        };
        for (value, origin) in items {
            if !spec.allowed.is_empty() && !spec.allowed.contains(&value) {
                return Err(usage(format!(
                    "{}: input `{}` must be one of {}, not {value:?}",
                    origin.describe(),
                    spec.name,
                    spec.allowed.join(", ")
                )));
            }
            if let Some(validate) = spec.validate
                && let Err(problem) = validate(value)
            {
                return Err(usage(format!(
                    "{}: input `{}` = {value:?} {problem}",
                    origin.describe(),
                    spec.name,
                )));
            }
        }
    }

    let mode = match values.get(MODE) {
        Some(Resolved::Single(value, _)) => Some(value.as_str()),
        _ => None,
    };
    let missing: Vec<&str> = schema
        .specs
        .iter()
        .filter(|spec| spec.required && spec.applies_to(mode))
        .map(|spec| spec.name)
        .filter(|name| values.get(*name).is_none_or(Resolved::is_empty))
        .collect();
    if let Some(first) = missing.first() {
        let list = missing
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let in_mode = mode
            .map(|mode| format!(" in {mode} mode"))
            .unwrap_or_default();
        return Err(usage(format!(
            "missing required input {list}{in_mode} (give it in the profile's [inputs] or with --input {first}=VALUE)\n{extension_id} accepts:\n{}",
            schema.describe().trim_end()
        )));
    }

    let mut inputs = Inputs {
        values,
        sensitive: BTreeSet::new(),
        references,
    };
    for name in sensitive {
        inputs.mark_sensitive(name);
    }
    Ok(inputs)
}

/// Checks a layer on its own: every name is accepted by the schema, `+=` only adds to list
/// inputs, and every `{name}` reference in a profile value names an input the schema accepts.
pub fn check(extension_id: &str, schema: &InputSchema, layer: &Layer) -> anyhow::Result<()> {
    for Setting {
        name,
        value,
        origin,
        append,
    } in &layer.0
    {
        if !schema.accepts(name) {
            let names = schema.specs.iter().map(|spec| spec.name);
            let hint = did_you_mean(name, names)
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            return Err(usage(format!(
                "{}: unknown input `{name}`{hint}\n{extension_id} accepts:\n{}",
                origin.describe(),
                schema.describe().trim_end()
            )));
        }
        if *append && schema.kind(name) != Kind::List {
            let lists = schema
                .list_names()
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>();
            let which = if lists.is_empty() {
                format!("{extension_id} has none")
            } else {
                lists.join(", ")
            };
            return Err(usage(format!(
                "{}: `{name}+=`: `+=` adds to a list input ({which}); `{name}` takes one value, given with `{name}=VALUE`",
                origin.describe()
            )));
        }
        if *origin != Origin::CommandLine {
            interpolate(value, |reference| {
                if schema.accepts(reference) {
                    Ok("")
                } else {
                    Err(format!("`{{{reference}}}` refers to no input {extension_id} accepts (write `{{{{` for a literal brace)"))
                }
            })
            .map_err(|message| usage(format!("{}: input `{name}`: {message}", origin.describe())))?;
        }
    }
    Ok(())
}

/// Expands `{name}` with the value of input `name`; `{{` and `}}` stand for braces.
fn interpolate<'v>(
    template: &str,
    mut lookup: impl FnMut(&str) -> Result<&'v str, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(format!(
                        "unclosed `{{{name}` (write `{{{{` for a literal brace)"
                    ));
                }
                let value = lookup(&name)?;
                if value.contains('{') {
                    return Err(format!(
                        "`{{{name}}}` refers to an input that itself uses `{{...}}`"
                    ));
                }
                out.push_str(value);
            }
            '}' => return Err("unmatched `}` (write `}}` for a literal brace)".to_owned()),
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_spaces(value: &str) -> Result<(), String> {
        if value.contains(' ') {
            Err("has a space".to_owned())
        } else {
            Ok(())
        }
    }

    static SPECS: [InputSpec; 6] = [
        InputSpec {
            default: Some("build"),
            allowed: &["build", "attach"],
            ..InputSpec::new("mode", "what to do")
        },
        InputSpec {
            modes: &["attach"],
            default: Some("10s"),
            ..InputSpec::new("timeout", "how long to wait")
        },
        InputSpec {
            required: true,
            validate: Some(no_spaces),
            ..InputSpec::new("vm_name", "the VM's name")
        },
        InputSpec {
            validate: Some(no_spaces),
            ..InputSpec::new("project", "a project")
        },
        InputSpec {
            required: true,
            modes: &["build"],
            ..InputSpec::new("template", "what to build")
        },
        InputSpec {
            kind: Kind::List,
            validate: Some(no_spaces),
            ..InputSpec::new("files", "extra files")
        },
    ];
    static SCHEMA: InputSchema = InputSchema {
        specs: &SPECS,
        free_form: Some(("var.", "template variables")),
    };

    fn layer(pairs: &[(&str, &str)], origin: Origin) -> Layer {
        Layer(
            pairs
                .iter()
                .map(|(k, v)| Setting::new(*k, *v, origin.clone()))
                .collect(),
        )
    }

    #[test]
    fn command_line_beats_profile_beats_default() {
        let profile = layer(
            &[("vm_name", "a"), ("mode", "build")],
            Origin::Profile("p.toml:3:1".into()),
        );
        let cli = layer(&[("mode", "attach")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap();
        assert_eq!(inputs.get("mode"), Some("attach"));
        assert_eq!(inputs.get("vm_name"), Some("a"));
        assert_eq!(inputs.origin("mode"), Some(&Origin::CommandLine));
    }

    #[test]
    fn unknown_inputs_suggest_and_list_the_schema() {
        let cli = layer(&[("vm_nmae", "a")], Origin::CommandLine);
        let err = resolve("ext.x", &SCHEMA, &Layer::default(), &cli, &[]).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("unknown input `vm_nmae`; did you mean `vm_name`?"),
            "{text}"
        );
        assert!(text.contains("var.NAME"), "{text}");
    }

    #[test]
    fn free_form_prefix_needs_a_name() {
        let cli = layer(
            &[("var.size", "1G"), ("vm_name", "a"), ("template", "t")],
            Origin::CommandLine,
        );
        let inputs = resolve("ext.x", &SCHEMA, &Layer::default(), &cli, &[]).unwrap();
        assert_eq!(
            inputs.with_prefix("var.").collect::<Vec<_>>(),
            vec![("size", "1G")]
        );
        let bare = layer(&[("var.", "1G")], Origin::CommandLine);
        assert!(resolve("ext.x", &SCHEMA, &Layer::default(), &bare, &[]).is_err());
    }

    #[test]
    fn allowed_values_are_enforced() {
        let cli = layer(&[("mode", "explode")], Origin::CommandLine);
        let err = resolve("ext.x", &SCHEMA, &Layer::default(), &cli, &[]).unwrap_err();
        assert!(format!("{err}").contains("must be one of build, attach"));
    }

    #[test]
    fn references_expand_one_level() {
        let profile = layer(
            &[("vm_name", "haskell-{project}")],
            Origin::Profile("p:1:1".into()),
        );
        let cli = layer(
            &[("project", "web"), ("template", "t")],
            Origin::CommandLine,
        );
        let inputs = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap();
        assert_eq!(inputs.get("vm_name"), Some("haskell-web"));
        let origin = Origin::Profile("p:1:1".into());
        let dangling = layer(&[("vm_name", "x-{nope}")], origin.clone());
        assert!(resolve("ext.x", &SCHEMA, &dangling, &Layer::default(), &[]).is_err());
        let unclosed = layer(&[("vm_name", "x-{project")], origin.clone());
        let err = resolve("ext.x", &SCHEMA, &unclosed, &cli, &[]).unwrap_err();
        assert!(err.to_string().contains("unclosed `{project`"), "{err}");
        let literal = layer(&[("vm_name", "{{x}}")], origin);
        let inputs = resolve("ext.x", &SCHEMA, &literal, &cli, &[]).unwrap();
        assert_eq!(inputs.get("vm_name"), Some("{x}"));
        let typed = layer(
            &[("vm_name", "{as-is}"), ("template", "t")],
            Origin::CommandLine,
        );
        let inputs = resolve("ext.x", &SCHEMA, &Layer::default(), &typed, &[]).unwrap();
        assert_eq!(inputs.get("vm_name"), Some("{as-is}"));
    }

    #[test]
    fn required_inputs_come_from_the_schema_and_the_mode() {
        let attach = layer(&[("mode", "attach")], Origin::CommandLine);
        let err = resolve("ext.x", &SCHEMA, &Layer::default(), &attach, &[]).unwrap_err();
        assert!(
            format!("{err}").contains("missing required input `vm_name` in attach mode"),
            "{err}"
        );
        let build = layer(&[("vm_name", "a")], Origin::CommandLine);
        let err = resolve("ext.x", &SCHEMA, &Layer::default(), &build, &[]).unwrap_err();
        assert!(
            format!("{err}").contains("missing required input `template` in build mode"),
            "{err}"
        );
        let attach = layer(&[("mode", "attach"), ("vm_name", "a")], Origin::CommandLine);
        resolve("ext.x", &SCHEMA, &Layer::default(), &attach, &[]).unwrap();
    }

    #[test]
    fn defaults_apply_only_in_their_mode() {
        let build = layer(&[("vm_name", "a"), ("template", "t")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &Layer::default(), &build, &[]).unwrap();
        assert_eq!(inputs.get("timeout"), None);
        let profile = layer(&[("mode", "build")], Origin::Profile("p:1:1".into()));
        let attach = layer(&[("vm_name", "a"), ("mode", "attach")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &attach, &[]).unwrap();
        assert_eq!(inputs.get("timeout"), Some("10s"));
        assert_eq!(inputs.origin("timeout"), Some(&Origin::Default));
    }

    #[test]
    fn validators_locate_bad_values() {
        let profile = layer(
            &[("vm_name", "a b"), ("template", "t")],
            Origin::Profile("p.toml:4:11".into()),
        );
        let err = resolve("ext.x", &SCHEMA, &profile, &Layer::default(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.toml:4:11: input `vm_name` = \"a b\" has a space"
        );
    }

    #[test]
    fn a_bad_value_is_reported_as_typed_not_as_a_value_made_from_it() {
        let profile = layer(
            &[("vm_name", "vm-{project}"), ("template", "t")],
            Origin::Profile("p:1:1".into()),
        );
        let cli = layer(&[("project", "x y")], Origin::CommandLine);
        let err = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--input: input `project` = \"x y\" has a space"
        );
    }

    #[test]
    fn sensitivity_follows_references() {
        let profile = layer(
            &[("vm_name", "vm-{project}"), ("template", "t")],
            Origin::Profile("p:1:1".into()),
        );
        let cli = layer(&[("project", "secret")], Origin::CommandLine);
        let mut inputs = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap();
        inputs.mark_sensitive("project");
        assert!(inputs.is_sensitive("vm_name"));
        assert_eq!(inputs.redacted()["vm_name"], Value::Single(REDACTED.into()));
    }

    #[test]
    fn sensitive_values_are_redacted() {
        let cli = layer(
            &[("var.token", "s3cret"), ("vm_name", "a"), ("template", "t")],
            Origin::CommandLine,
        );
        let inputs = resolve(
            "ext.x",
            &SCHEMA,
            &Layer::default(),
            &cli,
            &["var.token".into()],
        )
        .unwrap();
        assert_eq!(
            inputs.redacted()["var.token"],
            Value::Single(REDACTED.into())
        );
        assert_eq!(inputs.secret_values(), vec!["s3cret".to_owned()]);
    }

    fn list_of(inputs: &Inputs, name: &str) -> Vec<String> {
        inputs
            .list(name)
            .iter()
            .map(|(value, _)| value.clone())
            .collect()
    }

    fn appended(name: &str, value: &str) -> Setting {
        Setting {
            append: true,
            ..Setting::new(name, value, Origin::CommandLine)
        }
    }

    const NEEDED: [(&str, &str); 2] = [("vm_name", "a"), ("template", "t")];

    #[test]
    fn a_command_line_list_replaces_the_profiles_and_plus_equals_adds_to_it() {
        let profile = layer(
            &[
                ("files", "p1"),
                ("files", "p2"),
                ("vm_name", "a"),
                ("template", "t"),
            ],
            Origin::Profile("p.toml:9:10".into()),
        );
        let inputs = resolve("ext.x", &SCHEMA, &profile, &Layer::default(), &[]).unwrap();
        assert_eq!(list_of(&inputs, "files"), ["p1", "p2"]);
        assert_eq!(inputs.get("files"), None, "a list has no single value");

        let replaced = layer(&[("files", "c1"), ("files", "c2")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &replaced, &[]).unwrap();
        assert_eq!(list_of(&inputs, "files"), ["c1", "c2"]);

        let added = Layer(vec![appended("files", "c1"), appended("files", "c2")]);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &added, &[]).unwrap();
        assert_eq!(list_of(&inputs, "files"), ["p1", "p2", "c1", "c2"]);
        assert_eq!(inputs.list("files")[2].1, Origin::CommandLine);
        assert_eq!(
            inputs.list("files")[0].1,
            Origin::Profile("p.toml:9:10".into())
        );

        // A layer's first `=` starts its own list, even after a `+=`.
        let mixed = Layer(vec![
            appended("files", "c1"),
            Setting::new("files", "c2", Origin::CommandLine),
            appended("files", "c3"),
        ]);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &mixed, &[]).unwrap();
        assert_eq!(list_of(&inputs, "files"), ["c2", "c3"]);

        let emptied = layer(&[("files", "")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &emptied, &[]).unwrap();
        assert!(list_of(&inputs, "files").is_empty());
        assert_eq!(inputs.redacted()["files"], Value::List(Vec::new()));
    }

    #[test]
    fn list_elements_are_validated_interpolated_and_redacted_one_by_one() {
        let profile = layer(
            &[("files", "ok"), ("files", "not ok")],
            Origin::Profile("p.toml:3:14".into()),
        );
        let needed = layer(&NEEDED, Origin::CommandLine);
        let err = resolve("ext.x", &SCHEMA, &profile, &needed, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.toml:3:14: input `files` = \"not ok\" has a space"
        );

        let profile = layer(
            &[("files", "{project}.txt"), ("files", "b")],
            Origin::Profile("p:1:1".into()),
        );
        let mut cli = layer(&NEEDED, Origin::CommandLine);
        cli.0
            .push(Setting::new("project", "web", Origin::CommandLine));
        let mut inputs = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap();
        assert_eq!(list_of(&inputs, "files"), ["web.txt", "b"]);
        inputs.mark_sensitive("project");
        assert!(inputs.is_sensitive("files"), "made from a secret");
        assert_eq!(
            inputs.redacted()["files"],
            Value::List(vec![REDACTED.to_owned(), REDACTED.to_owned()])
        );
        assert!(inputs.secret_values().contains(&"web.txt".to_owned()));

        let refers_to_list = layer(&[("vm_name", "x-{files}")], Origin::Profile("p:2:1".into()));
        let err = resolve("ext.x", &SCHEMA, &refers_to_list, &Layer::default(), &[]).unwrap_err();
        assert!(err.to_string().contains("refers to a list input"), "{err}");
    }

    #[test]
    fn plus_equals_is_for_lists_only() {
        let cli = Layer(vec![appended("vm_name", "a")]);
        let err = resolve("ext.x", &SCHEMA, &Layer::default(), &cli, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--input: `vm_name+=`: `+=` adds to a list input (`files`); `vm_name` takes one value, given with `vm_name=VALUE`"
        );
    }

    #[test]
    fn assignments_parse() {
        let parsed = parse_assignment("files+=a=b").unwrap();
        assert_eq!(
            (parsed.name.as_str(), parsed.value.as_str(), parsed.append),
            ("files", "a=b", true)
        );
        let parsed = parse_assignment(" vm_name =x").unwrap();
        assert_eq!((parsed.name.as_str(), parsed.append), ("vm_name", false));
        for bad in ["novalue", "=x", "+=x", " +=x"] {
            assert!(parse_assignment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_show_as_a_profile_writes_them() {
        let list = Value::List(vec!["a".into(), "b \"c\"".into()]);
        assert_eq!(list.to_string(), r#"["a", "b \"c\""]"#);
        assert_eq!(Value::Single("x y".into()).to_string(), "x y");
        assert_eq!(
            serde_json::to_string(&BTreeMap::from([
                ("l", list),
                ("s", Value::Single("v".into()))
            ]))
            .unwrap(),
            r#"{"l":["a","b \"c\""],"s":"v"}"#
        );
    }
}
