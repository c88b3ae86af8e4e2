//! CLI transcripts: `tests/cmd/*.toml` and the console examples in `docs/`, run by trycmd
//! against the real binary.
//!
//! Every case runs in a throwaway sandbox with the environment below, so nothing reads or writes
//! the real home directory: `.toml` cases say `fs.sandbox = true`; a Markdown page is sandboxed
//! when a `<page>.out/` directory exists (an empty one, kept by a `.keep` file, checks no files),
//! and starts from a copy of `<page>.in/` when there is one.
//! Regenerate with `TRYCMD=overwrite cargo test -p sandboxer --test it transcripts`, then review
//! every diff.

/// Makes a case's environment independent of the developer's.
///
/// trycmd can only *add* variables here, and its additions win over a case's own `[env.add]`.
/// The CLI treats an empty variable as unset, so "" stands for "removed".
fn hermetic(cases: &trycmd::TestCases) -> &trycmd::TestCases {
    cases
        // Relative paths: resolved in the case's sandbox, a fresh temporary directory.
        .env("SANDBOXER_HOME", "state")
        .env("XDG_CONFIG_HOME", "config")
        .env("HOME", "")
        .env("XDG_STATE_HOME", "")
        // A path that cannot exist: a case that got as far as running Packer fails instead.
        .env(
            "SANDBOXER_PACKER",
            "/nonexistent/sandboxer-tests-never-run-packer",
        )
        // clap wraps help to $COLUMNS when no stream is a terminal, and may colour it.
        .env("COLUMNS", "100")
        .env("CLICOLOR_FORCE", "")
        // No State Hub of the developer's: cases that want one set it themselves.
        .env("STATE_HUB_URL", "")
        .env("STATE_HUB_TOKEN", "")
        .env("STATE_HUB_TOKEN_FILE", "");
    with_make(cases).env("SANDBOXER", "")
}

/// Transcripts of `make remote-build` (the shim) run the real make and sh. The make that may be
/// running these tests (`make check`) must not pass its flags and jobserver down.
fn with_make(cases: &trycmd::TestCases) -> &trycmd::TestCases {
    cases
        .env("MAKEFLAGS", "")
        .env("MFLAGS", "")
        .env("MAKELEVEL", "")
        .register_bin("make", crate::common::require_tool("make"))
        .register_bin("sh", crate::common::require_tool("sh"))
}

/// The extension SDK's example program (`sandboxer/examples/scratch.rs`), which
/// `docs/extension-sdk.md` runs. `cargo test` builds examples before running tests.
fn scratch_example() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sandboxer"));
    let example = bin.with_file_name("examples").join("sandboxer-scratch");
    assert!(
        example.is_file(),
        "{} is missing: build it with `cargo build -p sandboxer --example sandboxer-scratch` (plain `cargo test` does)",
        example.display()
    );
    example
}

/// Adds the cases `pattern` matches, failing when it matches no file: trycmd runs nothing for
/// such a pattern, so a moved directory or a typo would otherwise pass in silence. The pattern
/// is read by `glob`, as trycmd reads it, relative to the same directory (`sandboxer/`).
fn cases_matching<'a>(cases: &'a trycmd::TestCases, pattern: &str) -> &'a trycmd::TestCases {
    let matched = glob::glob(pattern)
        .unwrap_or_else(|err| panic!("bad pattern {pattern}: {err}"))
        .filter_map(Result::ok)
        .filter(|path| path.is_file())
        .count();
    assert!(matched > 0, "no transcript matches {pattern}");
    cases.case(pattern)
}

#[test]
fn transcripts() {
    let cases = trycmd::TestCases::new();
    hermetic(&cases)
        .register_bin("sandboxer-scratch", scratch_example())
        .env("SANDBOXER_PROFILES", "")
        .env("SANDBOXER_PORT_REGISTRY", "")
        // The pool file: the default one, in the sandbox's config dir.
        .env("SANDBOXER_HOSTS", "");
    cases_matching(&cases, "../tests/cmd/*.toml");
    cases_matching(&cases, "../tests/cmd/*.trycmd");
    cases_matching(&cases, "../docs/*.md");
    for page in PAGES_THAT_BUILD {
        cases.skip(page);
    }
    cases.run();
}

/// Top-level pages whose examples build with the real Packer (or, for build hosts, show its
/// version).
const PAGES_THAT_BUILD: [&str; 4] = [
    "../docs/template-sets.md",
    "../docs/migration-build-machines.md",
    "../docs/history.md",
    "../docs/build-hosts.md",
];

/// Cases that run the real Packer found on PATH (`doctor`, the builds of the runbook, the
/// template sets page, the migration guide and the history page): the harness-wide stand-in path is left out, and
/// a case may set `SANDBOXER_PACKER` itself.
#[test]
fn transcripts_with_the_real_packer() {
    crate::common::require_tool("packer");
    let cases = trycmd::TestCases::new();
    cases
        .env("SANDBOXER_HOME", "state")
        .env("XDG_CONFIG_HOME", "config")
        .env("HOME", "")
        .env("XDG_STATE_HOME", "")
        .env("SANDBOXER_PROFILES", "")
        .env("SANDBOXER_PORT_REGISTRY", "")
        .env("SANDBOXER_HOSTS", "")
        .env("COLUMNS", "100")
        .env("CLICOLOR_FORCE", "")
        .env("STATE_HUB_URL", "")
        .env("STATE_HUB_TOKEN", "")
        .env("STATE_HUB_TOKEN_FILE", "");
    // `make remote-build` on the migration guide runs the sandboxer under test.
    with_make(&cases).env("SANDBOXER", env!("CARGO_BIN_EXE_sandboxer"));
    cases_matching(&cases, "../tests/cmd/real-packer/*.toml");
    cases_matching(&cases, "../docs/runbooks/*.md");
    for page in PAGES_THAT_BUILD {
        cases_matching(&cases, page);
    }
    cases.run();
}

/// Cases under `tests/cmd/env/` set `SANDBOXER_PROFILES`, `SANDBOXER_PORT_REGISTRY` or
/// `SANDBOXER_HOSTS` themselves, which the harness-wide empty values above would override.
#[test]
fn transcripts_with_their_own_sandboxer_profiles() {
    let cases = trycmd::TestCases::new();
    cases_matching(hermetic(&cases), "../tests/cmd/env/*.toml");
    cases.run();
}

/// The profiles the docs' examples run against are shown in full on the page: a `<page>.in/`
/// file that the page does not quote verbatim has drifted from what readers see.
#[test]
fn docs_quote_their_example_profiles() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut drifted = Vec::new();
    for entry in std::fs::read_dir(&docs).unwrap() {
        let fixtures = entry.unwrap().path();
        if fixtures.extension().is_none_or(|ext| ext != "in") {
            continue;
        }
        let page = std::fs::read_to_string(fixtures.with_extension("md")).unwrap();
        for profile in toml_files(&fixtures) {
            let text = std::fs::read_to_string(&profile).unwrap();
            if !page.contains(&format!("```toml\n{text}```\n")) {
                drifted.push(profile.display().to_string());
            }
        }
    }
    assert!(
        drifted.is_empty(),
        "not quoted verbatim in a ```toml block of their page: {drifted:?}"
    );
}

/// The SDK guide's code is the example the suite compiles and runs.
#[test]
fn the_sdk_guide_quotes_its_example_extension() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("../docs/extension-sdk.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/scratch.rs")).unwrap();
    assert!(
        page.contains(&format!("```rust\n{example}```\n")),
        "docs/extension-sdk.md does not quote sandboxer/examples/scratch.rs verbatim"
    );
}

/// A page whose examples ran outside a sandbox would write its state dir into `sandboxer/`.
#[test]
fn docs_with_examples_are_sandboxed() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for entry in std::fs::read_dir(&docs).unwrap() {
        let page = entry.unwrap().path();
        let runs_examples =
            |text: String| text.contains("```console") || text.contains("```trycmd");
        if page.extension().is_some_and(|ext| ext == "md")
            && runs_examples(std::fs::read_to_string(&page).unwrap())
        {
            assert!(
                page.with_extension("out").is_dir(),
                "{} has examples but no {} (add an empty `.keep` file there)",
                page.display(),
                page.with_extension("out").display()
            );
        }
    }
}

fn toml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(toml_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            found.push(path);
        }
    }
    found
}

/// Issue 6, defect 2: a non-UTF-8 argument or environment variable is a usage error (exit 2)
/// that says what is wrong, never a panic.
#[test]
fn non_utf8_arguments_and_environment_are_usage_errors() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;

    let sandboxer = crate::common::Sandboxer::new();
    let bad = OsStr::from_bytes(b"sb-\xff");
    let check = |mut command: std::process::Command, what: &str| {
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(stderr.contains("UTF-8"), "{what}: {stderr}");
        output
    };

    let mut show = sandboxer.command(&["show"]);
    show.arg(bad);
    check(show, "show <non-UTF-8 id>");

    let mut json = sandboxer.command(&["show", "--json"]);
    json.arg(bad);
    let output = check(json, "show --json <non-UTF-8 id>");
    let object: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(object["error"], "usage");

    let mut input = sandboxer.command(&["create", "--profile", "vm-packer-build", "--input"]);
    input.arg(OsStr::from_bytes(b"vm_name=\xfe"));
    check(input, "--input with a non-UTF-8 value");

    for variable in [
        "SANDBOXER_PROFILES",
        "SANDBOXER_PACKER",
        "XDG_CONFIG_HOME",
        "SANDBOXER_HOME",
    ] {
        let mut list = sandboxer.command(&["list"]);
        list.env(variable, bad);
        let output = check(list, variable);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) || variable == "SANDBOXER_HOME",
            "{variable}: {stderr}"
        );
    }
}
