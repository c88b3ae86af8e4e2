//! Which builds run: the `only` and `except` inputs, checked against the builds the template
//! writes out before Packer starts, and passed as `-only=` and `-except=`.
//!
//! Packer 1.6.6 builds nothing, and succeeds, when `-only` names no build: so a plain name the
//! template does not define is refused here, with the closest names. Globs (`null.*`) and
//! templates whose builds are only known once Packer evaluates them (`dynamic "source"`) are
//! passed through untouched: sandboxer never refuses what Packer would accept.

use crate::error::{did_you_mean, some_candidates, usage};
use crate::inputs::{Inputs, Origin};

use super::template::Template;

/// The inputs that select builds, in the order their flags are passed.
pub const INPUTS: [&str; 2] = ["only", "except"];

/// Characters that make an `-only`/`-except` entry a glob for Packer.
const GLOB: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// The builds to run, as Packer's flags take them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub only: Vec<String>,
    pub except: Vec<String>,
}

impl Selection {
    /// `-only=a,b` and `-except=c`, for the lists that are not empty.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, names) in [("-only", &self.only), ("-except", &self.except)] {
            if !names.is_empty() {
                args.push(format!("{flag}={}", names.join(",")));
            }
        }
        args
    }

    pub fn is_empty(&self) -> bool {
        self.only.is_empty() && self.except.is_empty()
    }
}

/// Reads `only` and `except` (an element may hold several names separated by commas, as
/// Packer's flags do) and refuses a plain name the template does not define. Says in `notes`
/// what it passed through unchecked, and why.
pub fn select(
    template: &Template,
    template_value: &str,
    inputs: &Inputs,
    notes: &mut Vec<String>,
) -> anyhow::Result<Selection> {
    let mut selection = Selection::default();
    for input in INPUTS {
        let mut names = Vec::new();
        for (value, origin) in inputs.list(input) {
            for name in value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
            {
                check(template, template_value, input, name, origin, notes)?;
                names.push(name.to_owned());
            }
        }
        match input {
            "only" => selection.only = names,
            _ => selection.except = names,
        }
    }
    Ok(selection)
}

fn check(
    template: &Template,
    template_value: &str,
    input: &str,
    name: &str,
    origin: &Origin,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    if name.contains(GLOB) {
        notes.push(format!(
            "`{input}` entry `{name}` is a glob: passed to Packer as it is, for Packer to match"
        ));
        return Ok(());
    }
    let builds = &template.builds;
    if builds.known.contains(name) {
        return Ok(());
    }
    if let Some(open) = builds.open_for(name) {
        notes.push(format!(
            "`{input}` entry `{name}` passed to Packer unchecked: only Packer knows those builds' names ({})",
            open.why
        ));
        return Ok(());
    }
    let candidates = builds.known.iter().map(String::as_str);
    let hint = did_you_mean(name, candidates.clone())
        .map(|near| format!("; did you mean `{near}`?"))
        .unwrap_or_default();
    let mut listed = some_candidates(
        name,
        "builds",
        candidates,
        &format!("`packer inspect {}`", template.path),
    );
    for open in &builds.open {
        listed.push_str(&format!("; and any `{}*` ({})", open.prefix, open.why));
    }
    Err(usage(format!(
        "{}: input `{input}`: template {template_value} has no build `{name}`{hint} ({listed})",
        origin.describe()
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::template::{Builds, OpenBuilds};
    use super::*;
    use crate::inputs::{self, Layer, Setting};

    fn template(builds: Builds) -> Template {
        Template {
            path: "/t".into(),
            workdir: "/t".into(),
            format: super::super::template::Format::Hcl2,
            variables: Some(Default::default()),
            unread_reason: None,
            requires_plugins: false,
            builds,
            auto_var_files: Vec::new(),
            digests: Vec::new(),
        }
    }

    fn inputs_with(settings: &[(&str, &str)]) -> Inputs {
        let mut layer = Layer(vec![
            Setting::new("packer_template", "t", Origin::CommandLine),
            Setting::new("vm_name", "vm", Origin::CommandLine),
        ]);
        for (name, value) in settings {
            layer.0.push(Setting::new(
                *name,
                *value,
                Origin::Profile("p.toml:7:10".into()),
            ));
        }
        inputs::resolve(
            super::super::ID,
            &super::super::SCHEMA,
            &layer,
            &Layer::default(),
            &[],
        )
        .unwrap()
    }

    fn known(names: &[&str]) -> Builds {
        Builds {
            known: names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<BTreeSet<_>>(),
            open: Vec::new(),
        }
    }

    #[test]
    fn known_names_pass_unknown_ones_are_refused_with_the_closest() {
        let template = template(known(&["null.alpha", "null.beta", "deb.null.gamma"]));
        let mut notes = Vec::new();
        let selection = select(
            &template,
            "t",
            &inputs_with(&[
                ("only", "null.alpha, deb.null.gamma"),
                ("except", "null.beta"),
            ]),
            &mut notes,
        )
        .unwrap();
        assert_eq!(selection.only, ["null.alpha", "deb.null.gamma"]);
        assert_eq!(
            selection.args(),
            ["-only=null.alpha,deb.null.gamma", "-except=null.beta"]
        );
        assert!(notes.is_empty(), "{notes:?}");

        let err = select(
            &template,
            "t",
            &inputs_with(&[("only", "null.alpah")]),
            &mut notes,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "p.toml:7:10: input `only`: template t has no build `null.alpah`; did you mean `null.alpha`? (builds: deb.null.gamma, null.alpha, null.beta)"
        );
    }

    #[test]
    fn globs_and_unknown_builds_pass_through_with_a_note() {
        let mut notes = Vec::new();
        let template_known = template(known(&["null.alpha"]));
        let selection = select(
            &template_known,
            "t",
            &inputs_with(&[("except", "*.beta")]),
            &mut notes,
        )
        .unwrap();
        assert_eq!(selection.args(), ["-except=*.beta"]);
        assert!(notes[0].contains("is a glob"), "{notes:?}");

        let dynamic = template(Builds {
            known: ["null.debian".to_owned()].into(),
            open: vec![OpenBuilds {
                prefix: "flavors.null.".into(),
                why: "build block `flavors` makes its sources with `dynamic \"source\"` in /t/b.pkr.hcl".into(),
            }],
        });
        notes.clear();
        select(
            &dynamic,
            "t",
            &inputs_with(&[("only", "flavors.null.x")]),
            &mut notes,
        )
        .unwrap();
        assert!(notes[0].contains("unchecked"), "{notes:?}");
        let err = select(
            &dynamic,
            "t",
            &inputs_with(&[("only", "null.debain")]),
            &mut notes,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "p.toml:7:10: input `only`: template t has no build `null.debain`; did you mean `null.debian`? (builds: null.debian; and any `flavors.null.*` (build block `flavors` makes its sources with `dynamic \"source\"` in /t/b.pkr.hcl))"
        );
        let unknown = template(Builds::unknown("sandboxer could not read it".into()));
        select(
            &unknown,
            "t",
            &inputs_with(&[("only", "anything")]),
            &mut notes,
        )
        .unwrap();
    }
}
