//! Input schemas, layering (extension defaults < profile < command line), validation and sensitivity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::error::{did_you_mean, usage};

/// Checks one input value; the error says what is wrong with it (the caller says where).
pub type Validator = fn(&str) -> Result<(), String>;

/// One input an extension accepts.
#[derive(Debug)]
pub struct InputSpec {
    pub name: &'static str,
    /// Must be present and not empty, in the modes the input applies to.
    pub required: bool,
    /// The modes (values of the `mode` input) the input applies to; empty means every mode.
    pub modes: &'static [&'static str],
    pub default: Option<&'static str>,
    /// When not empty, the only values accepted.
    pub allowed: &'static [&'static str],
    /// A check every value must pass, such as a name pattern.
    pub validate: Option<Validator>,
    pub description: &'static str,
}

impl InputSpec {
    /// An optional input for every mode, with no default and no checks; the base of a spec
    /// literal (`InputSpec { required: true, ..InputSpec::new("name", "what it is") }`).
    pub const fn new(name: &'static str, description: &'static str) -> InputSpec {
        InputSpec {
            name,
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
    /// e.g. `("var.", "passed to Packer as -var NAME=value")`.
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

    fn accepts(&self, name: &str) -> bool {
        self.spec(name).is_some()
            || self
                .free_form
                .is_some_and(|(prefix, _)| name.len() > prefix.len() && name.starts_with(prefix))
    }

    /// A table of what the extension accepts, for error messages and `profiles show`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for spec in self.specs {
            let mut notes = Vec::new();
            if spec.required {
                notes.push("required".to_owned());
            }
            if !spec.modes.is_empty() {
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
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Default => "the extension's default".to_owned(),
            Origin::Profile(location) => location.clone(),
            Origin::CommandLine => "--input".to_owned(),
        }
    }
}

/// One layer of raw inputs, in the order they were given.
#[derive(Debug, Default, Clone)]
pub struct Layer(pub Vec<(String, String, Origin)>);

/// Inputs after layering, interpolation and validation.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    values: BTreeMap<String, (String, Origin)>,
    sensitive: BTreeSet<String>,
    /// For each input, the inputs whose values it took in through `{name}` references.
    references: BTreeMap<String, BTreeSet<String>>,
}

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

impl Inputs {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(value, _)| value.as_str())
    }

    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.values.get(name).map(|(_, origin)| origin)
    }

    /// All inputs whose name starts with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.values.iter().filter_map(move |(name, (value, _))| {
            Some((name.strip_prefix(prefix)?, value.as_str()))
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

    /// The values of sensitive inputs: what a redactor must hide.
    pub fn secret_values(&self) -> Vec<String> {
        self.sensitive
            .iter()
            .filter_map(|name| self.get(name))
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Every input, sensitive values replaced by [`REDACTED`]: what records and JSON may hold.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .map(|(name, (value, _))| {
                let shown = if self.is_sensitive(name) {
                    REDACTED
                } else {
                    value
                };
                (name.clone(), shown.to_owned())
            })
            .collect()
    }
}

/// Parses `key=value` from `--input`.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Layers `profile` over the schema's defaults and `command_line` over both, expands `{name}`
/// references between inputs, and checks the result against the schema.
pub fn resolve(
    extension_id: &str,
    schema: &InputSchema,
    profile: &Layer,
    command_line: &Layer,
    sensitive: &[String],
) -> anyhow::Result<Inputs> {
    let mut values: BTreeMap<String, (String, Origin)> = BTreeMap::new();
    for spec in schema.specs {
        if let Some(default) = spec.default {
            values.insert(spec.name.to_owned(), (default.to_owned(), Origin::Default));
        }
    }
    check(extension_id, schema, profile)?;
    check(extension_id, schema, command_line)?;
    for (name, value, origin) in profile.0.iter().chain(&command_line.0) {
        values.insert(name.clone(), (value.clone(), origin.clone()));
    }

    let snapshot: BTreeMap<String, String> = values
        .iter()
        .map(|(name, (value, _))| (name.clone(), value.clone()))
        .collect();
    let mut references: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Only profile values are templates: a value typed on the command line is taken literally.
    for (name, (value, origin)) in values.iter_mut() {
        if *origin == Origin::CommandLine {
            continue;
        }
        *value = interpolate(value, |reference| {
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
        .map_err(|message| usage(format!("{}: input `{name}`: {message}", origin.describe())))?;
    }

    for spec in schema.specs {
        let Some((value, origin)) = values.get(spec.name) else {
            continue;
        };
        if !spec.allowed.is_empty() && !spec.allowed.contains(&value.as_str()) {
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

    let mode = values.get(MODE).map(|(value, _)| value.as_str());
    let missing: Vec<&str> = schema
        .specs
        .iter()
        .filter(|spec| spec.required && spec.applies_to(mode))
        .map(|spec| spec.name)
        .filter(|name| {
            values
                .get(*name)
                .is_none_or(|(value, _)| value.trim().is_empty())
        })
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

/// Checks a layer on its own: every name is accepted by the schema, and every `{name}`
/// reference in a profile value names an input the schema accepts.
pub fn check(extension_id: &str, schema: &InputSchema, layer: &Layer) -> anyhow::Result<()> {
    for (name, value, origin) in &layer.0 {
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

    static SPECS: [InputSpec; 4] = [
        InputSpec {
            default: Some("build"),
            allowed: &["build", "attach"],
            ..InputSpec::new("mode", "what to do")
        },
        InputSpec {
            required: true,
            validate: Some(no_spaces),
            ..InputSpec::new("vm_name", "the VM's name")
        },
        InputSpec::new("project", "a project"),
        InputSpec {
            required: true,
            modes: &["build"],
            ..InputSpec::new("template", "what to build")
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
                .map(|(k, v)| (k.to_string(), v.to_string(), origin.clone()))
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
    fn sensitivity_follows_references() {
        let profile = layer(
            &[("vm_name", "vm-{project}"), ("template", "t")],
            Origin::Profile("p:1:1".into()),
        );
        let cli = layer(&[("project", "secret")], Origin::CommandLine);
        let mut inputs = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap();
        inputs.mark_sensitive("project");
        assert!(inputs.is_sensitive("vm_name"));
        assert_eq!(inputs.redacted()["vm_name"], REDACTED);
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
        assert_eq!(inputs.redacted()["var.token"], REDACTED);
        assert_eq!(inputs.secret_values(), vec!["s3cret".to_owned()]);
    }
}
