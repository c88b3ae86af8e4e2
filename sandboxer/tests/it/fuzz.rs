//! Replays the fuzz corpus and every input that ever crashed a fuzz target through the same
//! checks the fuzz targets run (`fuzz/checks.rs`), on the stable toolchain: a fixed crash stays
//! fixed without `cargo fuzz`. New crashes go to `fuzz/regressions/<target>/` (see `cargo xtask fuzz`).

#[path = "../../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

#[test]
fn fuzz_corpus_and_past_crashes_pass_their_checks() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for (target, check) in checks::TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = fuzz.join(kind).join(target);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
                {
                    continue; // .keep
                }
                let data = std::fs::read(&path).unwrap();
                replayed += 1;
                if std::panic::catch_unwind(|| check(&data)).is_err() {
                    failures.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        replayed >= 40,
        "only {replayed} inputs: is the corpus missing?"
    );
    assert!(failures.is_empty(), "checks failed for: {failures:#?}");
}
