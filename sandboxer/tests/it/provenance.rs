//! Provenance and `create --like`, with real Packer builds: what a record says made its
//! artifacts (checked against `sha256sum` and `packer version`), `show --provenance`, the
//! `provenance.json` beside kept OVAs, and rebuilding like a past sandbox, warned when the
//! template or Packer changed since.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{Run, Sandboxer, require_tool};
use crate::packer_build::assert_no_secret;

/// `sha256sum FILES... | sha256sum` in `dir`, files in byte order: the documented recipe for a
/// directory template's digest.
fn directory_digest_by_shell(dir: &Path, files: &[&str]) -> String {
    require_tool("sha256sum");
    let mut sorted = files.to_vec();
    sorted.sort();
    let script = format!("sha256sum {} | sha256sum", sorted.join(" "));
    let output = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

fn sha256sum(path: &Path) -> String {
    require_tool("sha256sum");
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

/// What `packer version` says, as sandboxer records it ("1.6.6").
fn packer_version() -> String {
    let output = Command::new("packer")
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let start = text.find(" v").expect("Packer vX.Y.Z") + 2;
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect()
}

fn which(tool: &str) -> PathBuf {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
        .canonicalize()
        .unwrap()
}

/// The multi-OS template set, copied: a directory template of three files and its own auto
/// var file, a var file per OS, a secret var file.
fn template_set() -> (Sandboxer, PathBuf) {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let dir = sandboxer.cwd().join(sandboxer.fixture("multi-os"));
    (sandboxer, dir)
}

#[test]
fn a_build_records_what_made_it_and_keeps_it_beside_its_ovas() {
    let (sandboxer, dir) = template_set();
    let created = sandboxer
        .run_in(
            &dir,
            &[
                "create",
                "--profile",
                "debian",
                "--json",
                "-q",
                "-i",
                "var_files+=os_pkrvars/secret.pkrvars.hcl",
                "-i",
                "only+=null.ubuntu",
            ],
        )
        .success();
    let record = created.json();
    let id = record["id"].as_str().unwrap().to_owned();
    let provenance = &record["provenance"];
    let template = dir.join("template").canonicalize().unwrap();

    // The template: a digest anyone can recompute with sha256sum, over its template files and
    // its own auto var file.
    assert_eq!(provenance["template"]["path"], template.to_str().unwrap());
    let files = [
        "build.pkr.hcl",
        "defaults.auto.pkrvars.hcl",
        "sources.pkr.hcl",
        "variables.pkr.hcl",
    ];
    assert_eq!(
        provenance["template"]["sha256"],
        directory_digest_by_shell(&template, &files)
    );
    for (entry, name) in provenance["template"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .zip(files)
    {
        assert_eq!(entry["path"], name);
        assert_eq!(entry["sha256"], sha256sum(&template.join(name)));
    }
    // The var files, in order: the OS's with its hash, the secret one without (a hash of a
    // short secret would give it away).
    let debian = dir.join("os_pkrvars/debian.pkrvars.hcl");
    let secret = dir.join("os_pkrvars/secret.pkrvars.hcl");
    assert_eq!(
        provenance["var_files"],
        serde_json::json!([
            {"path": debian.to_str().unwrap(), "sha256": sha256sum(&debian)},
            {"path": secret.to_str().unwrap(), "sha256": "<redacted>"},
        ])
    );
    assert_eq!(provenance["tool"]["name"], "packer");
    assert_eq!(
        provenance["tool"]["path"],
        which("packer").to_str().unwrap()
    );
    assert_eq!(provenance["tool"]["version"], packer_version());
    assert_eq!(provenance["variables"]["vm_name"], "debian-13");
    assert_eq!(
        provenance["variables"]["output_directory"],
        sandboxer.sandbox_dir(&id).join("output").to_str().unwrap()
    );
    assert_eq!(
        provenance["input_paths"]["packer_template"],
        template.to_str().unwrap()
    );

    // `show --provenance --json`: the documented document, builds and artifact hashes too.
    let document = sandboxer
        .run(&["show", &id, "--provenance", "--json"])
        .success()
        .json();
    assert_eq!(document["format"], "sandboxer-provenance/1");
    assert_eq!(document["sandbox"]["id"], id.as_str());
    assert_eq!(document["sandbox"]["profile"], "profile.debian");
    assert_eq!(document["template"], provenance["template"]);
    assert_eq!(document["var_files"], provenance["var_files"]);
    let mut builds: Vec<&str> = document["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|build| build["name"].as_str().unwrap())
        .collect();
    builds.sort(); // Packer runs them side by side
    assert_eq!(builds, ["null.debian", "null.ubuntu"]);
    let artifacts = document["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    for artifact in artifacts {
        let path = PathBuf::from(artifact["path"].as_str().unwrap());
        assert_eq!(artifact["sha256"], sha256sum(&path));
        assert!(
            builds.contains(&artifact["build"].as_str().unwrap()),
            "{artifact:#}"
        );
    }
    let human = sandboxer.run(&["show", &id, "--provenance"]).success();
    for line in [
        format!("template:   {}\n", template.display()),
        format!("var file:   {} (sha256 <redacted>)\n", secret.display()),
        format!(
            "packer:     {} {}\n",
            which("packer").display(),
            packer_version()
        ),
        "(succeeded), null.".to_owned(),
        "  vm_name = debian-13\n".to_owned(),
    ] {
        assert!(
            human.stdout.contains(&line),
            "{line:?}\n{}",
            human.describe()
        );
    }

    // Torn down, the OVAs move under artifacts/<id>/ with the same document beside them.
    sandboxer.run(&["teardown", &id]).success();
    let kept = sandboxer.state_dir().join("artifacts").join(&id);
    let beside: Value =
        serde_json::from_slice(&std::fs::read(kept.join("provenance.json")).unwrap()).unwrap();
    let after = sandboxer
        .run(&["show", &id, "--provenance", "--json"])
        .success()
        .json();
    assert_eq!(beside, after);
    assert_eq!(after["sandbox"]["state"], "torn-down");
    for artifact in after["artifacts"].as_array().unwrap() {
        let path = PathBuf::from(artifact["path"].as_str().unwrap());
        assert!(path.starts_with(&kept), "{}", path.display());
        assert_eq!(artifact["sha256"], sha256sum(&path));
    }

    // The secret var file's values are nowhere: not in the state dir, not in any view.
    assert_no_secret(
        &sandboxer,
        &["vf-s3cret-pw", "vf-t0ken-9f8e7d", &sha256sum(&secret)],
        &[&id],
        &[&created],
    );
}

/// The Packer version comes from the capabilities cache: one `packer version` per installed
/// Packer, not one per build.
#[test]
fn packers_version_is_asked_once_and_then_read_from_the_cache() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let template = format!("packer_template={}", sandboxer.fixture("quick"));
    let create = |vm: &str| {
        sandboxer
            .run(&[
                "create",
                "--profile",
                "vm-packer-build",
                "--json",
                "-q",
                "-i",
                &template,
                "-i",
                &format!("vm_name={vm}"),
            ])
            .success()
            .json()
    };
    let first = create("one");
    assert_eq!(first["provenance"]["tool"]["version"], packer_version());
    let cache = sandboxer.state_dir().join("cache/packer-capabilities.json");
    let cached = std::fs::read_to_string(&cache).unwrap();
    // A planted answer under the same key: the next build reports it, so it ran no
    // `packer version` of its own.
    std::fs::write(&cache, cached.replace(&packer_version(), "9.9.9")).unwrap();
    let second = create("two");
    assert_eq!(second["provenance"]["tool"]["version"], "9.9.9");
}

/// A profile building the `sensitive` fixture with a secret token and a plain input.
fn token_profile(sandboxer: &Sandboxer) -> (String, String) {
    let template = sandboxer.fixture("sensitive");
    let profiles = sandboxer.write_profile_in(
        "profiles",
        "profile.tokens.toml",
        &format!(
            "id = \"profile.tokens\"\ndescription = \"t\"\nextension = \"ext.vm-packer\"\nttl = \"2h\"\n\n[inputs]\nmode = \"build\"\npacker_template = \"{template}\"\nvm_name = \"from-profile\"\n"
        ),
    );
    (template, profiles)
}

/// sandboxer's warnings on stderr, without the timestamps of non-terminal output.
fn stderr_warnings(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|line| line.split_once("sandboxer: warning: "))
        .map(|(_, warning)| warning.to_owned())
        .collect()
}

#[test]
fn create_like_rebuilds_with_the_same_profile_and_inputs_and_warns_about_changes() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    let (template, profiles) = token_profile(&sandboxer);
    let first = sandboxer
        .run(&[
            "create",
            "--profile",
            "tokens",
            "--json",
            "-q",
            "-i",
            "vm_name=like-me",
            "-i",
            "var.token=first-secret-token",
        ])
        .success()
        .json();
    let id = first["id"].as_str().unwrap().to_owned();

    // The secret was never recorded: it must come again, and the error says which and how.
    sandboxer
        .run(&["create", "--like", &id])
        .code(2)
        .error_contains(&format!(
            "--like {id}: secret inputs are never recorded, so they cannot be replayed: give var.token again (--input var.token=...)"
        ));

    // From another directory, with the profile found elsewhere: the template path was recorded
    // absolute, so the rebuild finds it.
    let elsewhere = sandboxer.root().to_owned();
    let again = sandboxer
        .run_in(
            &elsewhere,
            &[
                "--profiles-dir",
                &profiles,
                "create",
                "--like",
                &id[..8],
                "--json",
                "-i",
                "var.token=second-secret-token",
            ],
        )
        .success();
    let second = again.json();
    assert_eq!(second["like"], id.as_str());
    assert_eq!(second["profile"], "profile.tokens");
    // The same inputs; the template as the absolute path it was found at.
    let mut expected = first["inputs"].clone();
    expected["packer_template"] = first["provenance"]["template"]["path"].clone();
    assert_eq!(second["inputs"], expected);
    assert_eq!(second["inputs"]["vm_name"], "like-me");
    assert_eq!(second["inputs"]["var.token"], "<redacted>");
    assert_eq!(
        second["provenance"]["template"],
        first["provenance"]["template"]
    );
    assert!(
        again.stderr.contains(&format!("made like {id}: its profile and inputs"))
            && again.stderr.contains(
                "secret inputs are never recorded: var.token came from this command line or the profile"
            ),
        "{}",
        again.describe()
    );
    assert_eq!(stderr_warnings(&again), Vec::<String>::new());
    let ova = PathBuf::from(second["artifacts"][0]["path"].as_str().unwrap());
    assert_eq!(ova.file_name().unwrap(), "like-me.ova");

    // An --input on top overrides the recorded value.
    let renamed = sandboxer
        .run(&[
            "create",
            "--like",
            &id,
            "--json",
            "-q",
            "-i",
            "var.token=third-secret-token",
            "-i",
            "vm_name=renamed",
        ])
        .success()
        .json();
    assert_eq!(renamed["inputs"]["vm_name"], "renamed");

    // The template changes: the rebuild runs, and warns with both digests.
    let file = sandboxer
        .cwd()
        .join(&template)
        .join("sensitive.pkr.hcl")
        .canonicalize()
        .unwrap();
    let old_digest = first["provenance"]["template"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("# changed after the first build\n");
    std::fs::write(&file, text).unwrap();
    let changed = sandboxer
        .run(&[
            "create",
            "--like",
            &id,
            "-i",
            "var.token=third-secret-token",
        ])
        .success();
    let new_digest = {
        let newest = sandboxer.ids().pop().unwrap();
        sandboxer.show(&newest)["provenance"]["template"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(old_digest, new_digest);
    let template_dir = file.parent().unwrap();
    assert_eq!(
        stderr_warnings(&changed),
        [format!(
            "the template changed: {} had sha256 {old_digest}, it is {new_digest} now",
            template_dir.display()
        )],
        "{}",
        changed.describe()
    );

    // A build recorded with another Packer: the rebuild says which ran then and which runs now.
    let registry = sandboxer::registry::Registry::open(
        camino::Utf8Path::from_path(sandboxer.state_dir()).unwrap(),
    )
    .unwrap();
    registry
        .update(&id, |record| {
            if let Some(tool) = record
                .provenance
                .as_mut()
                .and_then(|provenance| provenance.tool.as_mut())
            {
                tool.version = Some("1.5.0".to_owned());
            }
        })
        .unwrap();
    let older = sandboxer
        .run(&[
            "create",
            "--like",
            &id,
            "-i",
            "var.token=third-secret-token",
        ])
        .success();
    let warnings = stderr_warnings(&older);
    assert!(
        warnings.contains(&format!(
            "packer is {} now; the recorded build ran 1.5.0",
            packer_version()
        )),
        "{}",
        older.describe()
    );

    assert_no_secret(
        &sandboxer,
        &["first-secret-token", "second-secret-token"],
        &[&id],
        &[&again],
    );
}

/// Once a record is purged, its provenance lives on beside the kept OVA: `show --provenance`
/// and `create --like` read it there.
#[test]
fn a_purged_sandbox_still_has_provenance_and_can_be_built_again() {
    require_tool("packer");
    let sandboxer = Sandboxer::new();
    token_profile(&sandboxer);
    let first = sandboxer
        .run(&[
            "create",
            "--profile",
            "tokens",
            "--json",
            "-q",
            "-i",
            "vm_name=purged",
            "-i",
            "var.token=purged-secret-one",
        ])
        .success()
        .json();
    let id = first["id"].as_str().unwrap().to_owned();
    let before = sandboxer
        .run(&["show", &id, "--provenance", "--json"])
        .success()
        .json();
    sandboxer.run(&["teardown", &id]).success();
    let settings = sandboxer.root().join("config/sandboxer");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("config.toml"),
        "[history]\nretention = \"0s\"\n",
    )
    .unwrap();
    let gc = sandboxer.run(&["gc", "--json"]).success().json();
    assert_eq!(gc[0]["action"], "purge");
    assert!(!sandboxer.sandbox_dir(&id).exists());

    let after = sandboxer
        .run(&["show", &id, "--provenance", "--json"])
        .success()
        .json();
    assert_eq!(after["template"], before["template"]);
    assert_eq!(after["variables"], before["variables"]);
    assert_eq!(after["sandbox"]["state"], "torn-down");
    let again = sandboxer
        .run(&[
            "create",
            "--like",
            &id,
            "--json",
            "-q",
            "-i",
            "var.token=purged-secret-two",
        ])
        .success()
        .json();
    assert_eq!(again["like"], id.as_str());
    assert_eq!(again["inputs"]["vm_name"], "purged");
}
