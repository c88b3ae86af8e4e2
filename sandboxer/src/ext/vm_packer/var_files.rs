//! Packer var files (`*.pkrvars.hcl`, `*.pkrvars.json`): reading their values in-process, before
//! Packer starts, with errors located at `file:line:column`.
//!
//! Packer 1.6.6 reads a var file by its suffix (`.hcl` or `.json`, anything else is an error),
//! accepts only literal values in it (no variables, no function calls), and for an HCL2
//! template warns — without failing — about a variable the template does not declare. A legacy
//! JSON template takes JSON var files only.

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use crate::error::usage;
use crate::profile::line_column;

/// How a var file is written, decided by its name as Packer decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Hcl,
    Json,
}

impl Syntax {
    /// The syntax Packer reads `path` with; `None` when Packer would refuse to guess.
    pub fn of(path: &Utf8Path) -> Option<Syntax> {
        let name = path.file_name().unwrap_or_default();
        if name.ends_with(".hcl") {
            Some(Syntax::Hcl)
        } else if name.ends_with(".json") {
            Some(Syntax::Json)
        } else {
            None
        }
    }
}

/// Why a var file is refused for its name.
pub const UNKNOWN_SYNTAX: &str = "cannot tell how it is written: a var file's name ends in `.hcl` or `.json` (Packer goes by the name too)";

/// One `NAME = value` of a var file.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub variable: String,
    /// `file:line:column` of the name, the file as the user named it.
    pub location: String,
    /// The text of every string and number in the value, however deeply nested: what must be
    /// hidden when the variable is sensitive.
    pub leaves: Vec<String>,
}

/// A var file, read.
#[derive(Debug, Clone, PartialEq)]
pub struct VarFile {
    /// The file, absolute: what Packer is given.
    pub path: Utf8PathBuf,
    /// As the user named it (relative to the current directory, or as found in the template's
    /// directory), for messages.
    pub shown: String,
    pub syntax: Syntax,
    pub assignments: Vec<Assignment>,
    /// The sha256 of the file as it was read, for provenance.
    pub sha256: String,
}

/// Reads `path` (named `shown` in messages): a usage error, located where there is a place to
/// point at, when it cannot be read or Packer would refuse it.
pub fn read(path: &Utf8Path, shown: &str) -> anyhow::Result<VarFile> {
    let syntax =
        Syntax::of(path).ok_or_else(|| usage(format!("var file {shown}: {UNKNOWN_SYNTAX}")))?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading var file {shown}"))?;
    let assignments = match syntax {
        Syntax::Hcl => read_hcl(&text, shown)?,
        Syntax::Json => read_json(&text, shown)?,
    };
    Ok(VarFile {
        path: path.to_owned(),
        shown: shown.to_owned(),
        syntax,
        assignments,
        sha256: crate::provenance::sha256_hex(text.as_bytes()),
    })
}

fn read_hcl(text: &str, shown: &str) -> anyhow::Result<Vec<Assignment>> {
    use hcl::edit::Span as _;
    use hcl::eval::Evaluate as _;

    let body = hcl::edit::parser::parse_body(text).map_err(|err| {
        let location = err.location();
        usage(format!(
            "{shown}:{}:{}: {} (in `{}`)",
            location.line(),
            location.column(),
            err.message(),
            err.line().trim()
        ))
    })?;
    let at = |span: Option<std::ops::Range<usize>>| {
        format!(
            "{shown}:{}",
            line_column(text, span.map_or(0, |span| span.start))
        )
    };
    let mut assignments = Vec::new();
    for structure in body.iter() {
        if let Some(block) = structure.as_block() {
            return Err(usage(format!(
                "{}: unexpected block `{}`: a var file holds only `NAME = value` lines",
                at(block.span()),
                block.ident.as_str()
            )));
        }
        let Some(attribute) = structure.as_attribute() else {
            continue;
        };
        let location = at(attribute.span());
        let variable = attribute.key.as_str().to_owned();
        let expression: hcl::Expression = attribute.value.clone().into();
        // Packer evaluates var files without variables or functions; so do we.
        let value = expression.evaluate(&hcl::eval::Context::new()).map_err(|err| {
            usage(format!(
                "{location}: `{variable}`: {}; a var file holds values only, without variables or function calls",
                first_line(&err.to_string())
            ))
        })?;
        let mut leaves = Vec::new();
        hcl_leaves(&value, &mut leaves);
        assignments.push(Assignment {
            variable,
            location,
            leaves,
        });
    }
    Ok(assignments)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

fn hcl_leaves(value: &hcl::Value, out: &mut Vec<String>) {
    match value {
        hcl::Value::String(text) => out.push(text.clone()),
        hcl::Value::Number(number) => out.push(number.to_string()),
        hcl::Value::Array(items) => items.iter().for_each(|item| hcl_leaves(item, out)),
        hcl::Value::Object(map) => map.values().for_each(|item| hcl_leaves(item, out)),
        hcl::Value::Null | hcl::Value::Bool(_) => {}
    }
}

fn json_leaves(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Number(number) => out.push(number.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| json_leaves(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| json_leaves(item, out)),
        serde_json::Value::Null | serde_json::Value::Bool(_) => {}
    }
}

fn read_json(text: &str, shown: &str) -> anyhow::Result<Vec<Assignment>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        let message = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        usage(format!(
            "{shown}:{}:{}: {}",
            err.line(),
            err.column(),
            message.strip_suffix(&suffix).unwrap_or(&message)
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        let start = text.len() - text.trim_start().len();
        return Err(usage(format!(
            "{shown}:{}: a JSON var file holds one object of `\"NAME\": value` pairs",
            line_column(text, start)
        )));
    };
    let mut assignments = Vec::new();
    for (variable, offset) in top_level_keys(text) {
        let Some(value) = map.get(&variable) else {
            continue;
        };
        let mut leaves = Vec::new();
        json_leaves(value, &mut leaves);
        assignments.push(Assignment {
            location: format!("{shown}:{}", line_column(text, offset)),
            variable,
            leaves,
        });
    }
    Ok(assignments)
}

/// The keys of the top-level object of a valid JSON document, each with its byte offset, in
/// the order written (serde_json keeps no positions).
fn top_level_keys(text: &str) -> Vec<(String, usize)> {
    let bytes = text.as_bytes();
    let mut keys = Vec::new();
    let mut depth = 0_usize;
    let mut at = 0;
    // Whether the next string at depth 1 is a key (after `{` or `,`), not a value.
    let mut expect_key = false;
    while at < bytes.len() {
        match bytes[at] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = bytes[at] == b'{' && depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            b'"' => {
                let start = at;
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expect_key {
                    let raw = &text[start..=at.min(bytes.len() - 1)];
                    if let Ok(key) = serde_json::from_str::<String>(raw) {
                        keys.push((key, start));
                    }
                    expect_key = false;
                }
            }
            _ => {}
        }
        at += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hcl(text: &str) -> anyhow::Result<Vec<Assignment>> {
        read_hcl(text, "v.pkrvars.hcl")
    }

    #[test]
    fn hcl_values_are_read_with_their_lines() {
        let read = hcl(
            "# a comment\nos = \"debian\"\n\nsizes = [1, 2.5]\nmeta = {\n  owner = \"ops\"\n  ok = true\n}\nmotd = <<EOT\nhello\nEOT\n",
        )
        .unwrap();
        let summary: Vec<(&str, &str, Vec<&str>)> = read
            .iter()
            .map(|a| {
                (
                    a.variable.as_str(),
                    a.location.as_str(),
                    a.leaves.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("os", "v.pkrvars.hcl:2:1", vec!["debian"]),
                ("sizes", "v.pkrvars.hcl:4:1", vec!["1", "2.5"]),
                ("meta", "v.pkrvars.hcl:5:1", vec!["ops"]),
                ("motd", "v.pkrvars.hcl:9:1", vec!["hello\n"]),
            ]
        );
    }

    #[test]
    fn windows_line_endings_read_as_packer_reads_them() {
        let read = hcl("os = \"x\"\r\ncpus = 2\r\n").unwrap();
        assert_eq!(read[1].location, "v.pkrvars.hcl:2:1");
        assert_eq!(read[0].leaves, ["x"]);
    }

    #[test]
    fn hcl_errors_are_located() {
        let err = hcl("os = \"x\"\ntoken = \n").unwrap_err().to_string();
        assert!(err.starts_with("v.pkrvars.hcl:2:"), "{err}");
        let err = hcl("os = upper(\"x\")\n").unwrap_err().to_string();
        assert!(
            err.starts_with("v.pkrvars.hcl:1:1: `os`: ")
                && err.contains("without variables or function calls"),
            "{err}"
        );
        let err = hcl("a = 1\nos = \"${var.x}\"\n").unwrap_err().to_string();
        assert!(err.starts_with("v.pkrvars.hcl:2:1: `os`: "), "{err}");
        let err = hcl("a = 1\n\nblock {\n}\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "v.pkrvars.hcl:3:1: unexpected block `block`: a var file holds only `NAME = value` lines"
        );
    }

    #[test]
    fn json_values_are_read_with_their_lines() {
        let read = read_json(
            "{\n  \"os\": \"alpine\",\n  \"nested\": {\"os\": \"no\", \"list\": [\"a\", {\"b\": 3}]},\n  \"esc\\\"aped\": \"x\"\n}\n",
            "v.json",
        )
        .unwrap();
        let summary: Vec<(&str, &str, usize)> = read
            .iter()
            .map(|a| (a.variable.as_str(), a.location.as_str(), a.leaves.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("os", "v.json:2:3", 1),
                ("nested", "v.json:3:3", 3),
                ("esc\"aped", "v.json:4:3", 1)
            ]
        );
    }

    #[test]
    fn json_errors_are_located() {
        let err = read_json("{\n  \"os\": \"x\",\n}\n", "v.json")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "v.json:3:1: trailing comma");
        let err = read_json("\n [1]", "v.json").unwrap_err().to_string();
        assert_eq!(
            err,
            "v.json:2:2: a JSON var file holds one object of `\"NAME\": value` pairs"
        );
    }

    #[test]
    fn the_format_comes_from_the_name() {
        assert_eq!(Syntax::of("a.pkrvars.hcl".into()), Some(Syntax::Hcl));
        assert_eq!(Syntax::of("a.json".into()), Some(Syntax::Json));
        assert_eq!(Syntax::of("a.txt".into()), None);
        let err = read("a.txt".into(), "a.txt").unwrap_err().to_string();
        assert!(err.contains("ends in `.hcl` or `.json`"), "{err}");
    }
}
