//! Checks that keep the docs true to the repository: `docs/ARCHITECTURE.md`'s code map names
//! every module and only modules that exist, and every repository path the README and `docs/`
//! name (markdown links, backticked paths) exists.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The code map
// ---------------------------------------------------------------------------------------------

/// The `mod NAME;` declarations (modules in files of their own) in one source file.
fn declared_modules(source: &str) -> Vec<String> {
    source
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let line = line.strip_prefix("pub(crate) ").unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            (!name.contains(char::is_whitespace)).then(|| name.to_owned())
        })
        .collect()
}

/// Every module of the crate below `dir` (which holds `file`), as `a::b` paths.
fn modules_below(dir: &Path, file: &Path, prefix: &str, found: &mut Vec<String>) {
    let source =
        std::fs::read_to_string(file).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
    for name in declared_modules(&source) {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}::{name}")
        };
        let (own_file, own_dir) = if dir.join(&name).join("mod.rs").is_file() {
            (dir.join(&name).join("mod.rs"), dir.join(&name))
        } else {
            (dir.join(format!("{name}.rs")), dir.join(&name))
        };
        assert!(own_file.is_file(), "module {path} has no file");
        found.push(path.clone());
        modules_below(&own_dir, &own_file, &path, found);
    }
}

/// The code map's rows: the module named in the first column, and every backticked word of
/// the row.
fn code_map_rows(architecture: &str) -> Vec<(String, Vec<String>)> {
    let section = architecture
        .split("\n## ")
        .find(|section| section.starts_with("Code map"))
        .expect("docs/ARCHITECTURE.md has a `## Code map` section");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let words = backticked(line);
            (words[0].clone(), words)
        })
        .collect()
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_code_map_names_every_module_and_no_other() {
    let src = repository().join("sandboxer/src");
    let mut modules = Vec::new();
    modules_below(&src, &src.join("lib.rs"), "", &mut modules);
    assert!(
        modules.contains(&"ext::vm_packer".to_owned()),
        "{modules:?}"
    );
    let architecture = std::fs::read_to_string(repository().join("docs/ARCHITECTURE.md")).unwrap();
    let rows = code_map_rows(&architecture);

    // A module is named by a row of its own, or in the row of its closest ancestor that has
    // one (`cli::args` or `args` in the `cli` row).
    let mut unnamed = Vec::new();
    for module in &modules {
        let mut ancestor = module.as_str();
        let named = loop {
            if let Some((_, words)) = rows.iter().find(|(first, _)| first == ancestor) {
                let last = module.rsplit("::").next().unwrap();
                break ancestor == module
                    || words.iter().any(|word| word == module || word == last);
            }
            match ancestor.rsplit_once("::") {
                Some((parent, _)) => ancestor = parent,
                None => break false,
            }
        };
        if !named {
            unnamed.push(module.clone());
        }
    }
    assert!(
        unnamed.is_empty(),
        "modules missing from docs/ARCHITECTURE.md's code map: {unnamed:?}"
    );

    // And every row is about something that exists: a module, or a file such as `main.rs`.
    let stale: Vec<&String> = rows
        .iter()
        .map(|(first, _)| first)
        .filter(|first| !modules.contains(first) && !src.join(first.as_str()).is_file())
        .collect();
    assert!(
        stale.is_empty(),
        "code map rows about modules that do not exist: {stale:?}"
    );
}

#[test]
fn module_declarations_are_read_as_written() {
    let source = "//! x\npub mod a;\nmod b;\npub(crate) mod c;\n#[cfg(test)]\nmod tests {\n    mod inner;\n}\n";
    assert_eq!(declared_modules(source), ["a", "b", "c", "inner"]);
}

// ---------------------------------------------------------------------------------------------
// Paths named in the docs
// ---------------------------------------------------------------------------------------------

/// First components of paths the docs name that are not in this repository, and why. A path
/// starting anywhere else is a repository path and must exist.
const ELSEWHERE: &[(&str, &str)] = &[
    ("work", "a sandbox's working directory, in the state dir"),
    ("output", "a sandbox's output directory, in the state dir"),
    (
        "infra",
        "the infra repository that docs/migration-build-machines.md migrates",
    ),
    (
        "packer",
        "that infra repository's templates (docs/migration-build-machines.md)",
    ),
    (
        "target",
        "cargo's build directory: what cargo and xtask make (man pages, the bench report)",
    ),
];

/// The README and every page below `docs/`.
fn pages() -> Vec<PathBuf> {
    fn markdown_below(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                markdown_below(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                found.push(path);
            }
        }
    }
    let mut pages = vec![repository().join("README.md")];
    markdown_below(&repository().join("docs"), &mut pages);
    pages.sort();
    pages
}

/// A page's prose: fenced code blocks (commands, their output, file contents) left out.
fn prose(page: &str) -> String {
    let mut in_fence = false;
    let mut text = String::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// Targets of the page's relative markdown links (`[text](target)`), without `#anchors`.
fn relative_links(prose: &str) -> Vec<String> {
    prose
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| !target.contains("://") && !target.starts_with(['#', '<']))
        .filter(|target| !target.starts_with("mailto:"))
        .map(|target| target.split('#').next().unwrap().to_owned())
        .collect()
}

/// Backticked words of the page that name a path in this repository: relative paths with a
/// `/`, without placeholders (`<id>`), variables (`$HOME`), `~`, spaces, or a `./` that makes
/// them relative to the user's directory, and not starting [`ELSEWHERE`]. `builtin:PATH`
/// names a file compiled in from the repository: its PATH counts.
fn repository_paths(prose: &str) -> Vec<String> {
    backticked(prose)
        .into_iter()
        .map(|word| match word.strip_prefix("builtin:") {
            Some(path) => path.to_owned(),
            None => word,
        })
        .filter(|word| word.contains('/') && !word.starts_with(['/', '.', '~', '$', '-']))
        .filter(|word| !word.contains(['<', '$', ' ', ':', '=', '@']))
        .filter(|word| {
            let first = word.split('/').next().unwrap();
            !ELSEWHERE.iter().any(|(root, _)| *root == first)
        })
        .collect()
}

/// Whether `path` (a glob if it has a `*`) names something that exists below `base`.
fn exists_below(base: &Path, path: &str) -> bool {
    if path.contains('*') {
        let pattern = base.join(path);
        glob::glob(pattern.to_str().unwrap())
            .map(|mut matches| matches.any(|found| found.is_ok()))
            .unwrap_or(false)
    } else {
        base.join(path).exists()
    }
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let root = repository();
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = prose(&std::fs::read_to_string(&page).unwrap());
        let shown = page.strip_prefix(&root).unwrap().display().to_string();
        let dir = page.parent().unwrap();
        for link in relative_links(&text) {
            checked += 1;
            if !dir.join(&link).exists() {
                missing.push(format!("{shown}: link ({link})"));
            }
        }
        // A page whose examples run in a sandbox (`<page>.in/`) names that sandbox's files.
        let sandbox = page.with_extension("in");
        for path in repository_paths(&text) {
            checked += 1;
            if !exists_below(&root, &path) && !exists_below(&sandbox, &path) {
                missing.push(format!("{shown}: `{path}`"));
            }
        }
    }
    assert!(checked > 10, "the docs name only {checked} paths?");
    assert!(
        missing.is_empty(),
        "the docs name paths that are not in this repository (if one lives elsewhere on \
         purpose, add its first component to ELSEWHERE with the reason):\n{}",
        missing.join("\n")
    );
}

#[test]
fn paths_are_told_from_other_backticked_words() {
    let prose = "See [the map](docs/ARCHITECTURE.md#code-map) and [x](https://example.org). \
        Built from `profiles/`, `infra-shims/` and `builtin:examples/ova/ova.pkr.hcl`; \
        not `sandboxes/<id>/lock`, `$XDG_STATE_HOME/sandboxer`, `./profiles`, \
        `/proc/1/cmdline`, `work/`, `cli::args`, `main.rs` or `packer build`.";
    assert_eq!(relative_links(prose), ["docs/ARCHITECTURE.md"]);
    assert_eq!(
        repository_paths(prose),
        ["profiles/", "infra-shims/", "examples/ova/ova.pkr.hcl"]
    );
}
