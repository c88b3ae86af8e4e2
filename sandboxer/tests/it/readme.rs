//! The README's commands: every `sandboxer …` line in its code blocks is accepted by the real
//! command line (flags, values, subcommands), its profile example parses as a profile, and the
//! two front-door commands it promises are Makefile targets. The docs' longer examples are run
//! as transcripts (`cli.rs`); these are checked without running, as most need a live sandbox.

use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// `(info string, body)` of every fenced code block.
fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// A line's words, without a trailing `# comment`; the README's commands use no quoting.
fn words(line: &str) -> Vec<String> {
    let command = match line.find("  #") {
        Some(at) => &line[..at],
        None => line,
    };
    command.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn every_sandboxer_command_in_the_readme_parses() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for (_, body) in code_blocks(&readme()) {
        for line in body.lines().filter(|line| line.starts_with("sandboxer ")) {
            checked += 1;
            if let Err(err) = sandboxer::cli::command().try_get_matches_from(words(line)) {
                refused.push(format!("{line}\n  {}", err.render().to_string().trim()));
            }
        }
    }
    assert!(
        checked >= 10,
        "found only {checked} sandboxer commands in the README"
    );
    assert!(
        refused.is_empty(),
        "README commands the CLI refuses:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_readme_profile_example_parses() {
    let blocks: Vec<String> = code_blocks(&readme())
        .into_iter()
        .filter(|(info, _)| info == "toml")
        .map(|(_, body)| body)
        .collect();
    assert!(!blocks.is_empty(), "the README shows a profile");
    for body in blocks {
        sandboxer::profile::parse(
            &body,
            "README.md",
            sandboxer::profile::Source::File("README.md".into()),
        )
        .unwrap_or_else(|err| panic!("the README's profile does not parse: {err:#}\n{body}"));
    }
}

#[test]
fn the_readme_front_door_commands_are_makefile_targets() {
    let makefile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Makefile")).unwrap();
    for (_, body) in code_blocks(&readme()) {
        for line in body.lines().filter(|line| line.starts_with("make ")) {
            let target = words(line)[1].clone();
            assert!(
                makefile
                    .lines()
                    .any(|rule| rule.starts_with(&format!("{target}:"))),
                "README runs `{line}`, but the Makefile has no `{target}` target"
            );
        }
    }
}
