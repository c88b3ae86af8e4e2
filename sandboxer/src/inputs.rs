//! Input schemas, layering (extension defaults < profile < command line), validation and sensitivity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{did_you_mean, usage};

/// One input an extension accepts.
#[derive(Debug)]
pub struct InputSpec {
    pub name: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
    /// When not empty, the only values accepted.
    pub allowed: &'static [&'static str],
    pub description: &'static str,
}

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
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

    pub fn mark_sensitive(&mut self, name: &str) {
        self.sensitive.insert(name.to_owned());
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
    // Only profile values are templates: a value typed on the command line is taken literally.
    for (name, (value, origin)) in values.iter_mut() {
        if *origin == Origin::CommandLine {
            continue;
        }
        *value = interpolate(value, |reference| {
            snapshot.get(reference).map(String::as_str).ok_or_else(|| {
                if schema.accepts(reference) {
                    format!(
                        "`{{{reference}}}` has no value; give it with --input {reference}=VALUE"
                    )
                } else {
                    format!(
                        "`{{{reference}}}` refers to no input (write `{{{{` for a literal brace)"
                    )
                }
            })
        })
        .map_err(|message| usage(format!("{}: input `{name}`: {message}", origin.describe())))?;
    }

    for spec in schema.specs {
        let value = values.get(spec.name).map(|(value, _)| value.as_str());
        if !spec.allowed.is_empty()
            && let Some(value) = value
            && !spec.allowed.contains(&value)
        {
            let origin = &values[spec.name].1;
            return Err(usage(format!(
                "{}: input `{}` must be one of {}, not {value:?}",
                origin.describe(),
                spec.name,
                spec.allowed.join(", ")
            )));
        }
    }

    let mut inputs = Inputs {
        values,
        sensitive: BTreeSet::new(),
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

/// Checks that every input the schema marks required is present and not empty.
///
/// Kept apart from [`resolve`] because which inputs are required can depend on the mode.
pub fn require(
    extension_id: &str,
    schema: &InputSchema,
    inputs: &Inputs,
    names: &[&str],
) -> anyhow::Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| inputs.get(name).is_none_or(|value| value.trim().is_empty()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(usage(format!(
        "missing required input {list} (give it in the profile's [inputs] or with --input {}=VALUE)\n{extension_id} accepts:\n{}",
        missing[0],
        schema.describe().trim_end()
    )))
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

    static SPECS: [InputSpec; 3] = [
        InputSpec {
            name: "mode",
            required: false,
            default: Some("build"),
            allowed: &["build", "attach"],
            description: "what to do",
        },
        InputSpec {
            name: "vm_name",
            required: true,
            default: None,
            allowed: &[],
            description: "the VM's name",
        },
        InputSpec {
            name: "project",
            required: false,
            default: None,
            allowed: &[],
            description: "a project",
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
        let cli = layer(&[("var.size", "1G")], Origin::CommandLine);
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
        let cli = layer(&[("project", "web")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &profile, &cli, &[]).unwrap();
        assert_eq!(inputs.get("vm_name"), Some("haskell-web"));
        let origin = Origin::Profile("p:1:1".into());
        let dangling = layer(&[("vm_name", "x-{nope}")], origin.clone());
        assert!(resolve("ext.x", &SCHEMA, &dangling, &Layer::default(), &[]).is_err());
        let unclosed = layer(&[("vm_name", "x-{project")], origin.clone());
        let err = resolve("ext.x", &SCHEMA, &unclosed, &cli, &[]).unwrap_err();
        assert!(err.to_string().contains("unclosed `{project`"), "{err}");
        let literal = layer(&[("vm_name", "{{x}}")], origin);
        let inputs = resolve("ext.x", &SCHEMA, &literal, &Layer::default(), &[]).unwrap();
        assert_eq!(inputs.get("vm_name"), Some("{x}"));
        let typed = layer(&[("vm_name", "{as-is}")], Origin::CommandLine);
        let inputs = resolve("ext.x", &SCHEMA, &Layer::default(), &typed, &[]).unwrap();
        assert_eq!(inputs.get("vm_name"), Some("{as-is}"));
    }

    #[test]
    fn missing_required_inputs_are_named() {
        let inputs = resolve("ext.x", &SCHEMA, &Layer::default(), &Layer::default(), &[]).unwrap();
        let err = require("ext.x", &SCHEMA, &inputs, &["vm_name"]).unwrap_err();
        assert!(format!("{err}").contains("missing required input `vm_name`"));
    }

    #[test]
    fn sensitive_values_are_redacted() {
        let cli = layer(&[("var.token", "s3cret")], Origin::CommandLine);
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
