//! A development helper for `cargo xtask bench`: fills a state directory with COUNT sandbox
//! records made through the library (`Registry::create`), as real sandboxes leave them.
//!
//! `cargo run --release --example bench-records -- STATE_DIR COUNT`
//!
//! Records cycle through the end states a registry collects over time (ready with an artifact,
//! failed, cancelled, torn down, expired), and some are past their TTL, so `gc --dry-run` has
//! something to report. None is in progress: those would be reconciled (rewritten) by the
//! first `list`, and every later measurement would see a different registry.

use std::collections::BTreeMap;

use anyhow::Context as _;
use camino::Utf8PathBuf;
use jiff::{SignedDuration, Timestamp};
use sandboxer::inputs::Value;
use sandboxer::record::{
    Artifact, BuildOutcome, BuildRun, Placement, Record, SCHEMA_VERSION, State,
};
use sandboxer::registry::Registry;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count), None) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: bench-records STATE_DIR COUNT");
    };
    let count: usize = count.parse().context("COUNT must be a whole number")?;
    let registry = Registry::open(&Utf8PathBuf::from(dir))?;
    let now = Timestamp::now();
    for index in 0..count {
        registry.create(|id| record(id, index, now))?;
    }
    Ok(())
}

fn record(id: &str, index: usize, now: Timestamp) -> Record {
    let age = SignedDuration::from_mins(i64::try_from(index % 600).unwrap_or(0));
    let created_at = now - age - SignedDuration::from_hours(1);
    // Every third sandbox outlived its TTL; the others have hours left.
    let expires_at = if index.is_multiple_of(3) {
        created_at + SignedDuration::from_mins(30)
    } else {
        now + SignedDuration::from_hours(12)
    };
    let state = [
        State::Ready,
        State::Ready,
        State::Failed,
        State::TornDown,
        State::Cancelled,
        State::Expired,
    ][index % 6];
    let state_reason = match state {
        State::Failed => Some("packer build failed (exit code 1): null.example: Script exited with non-zero exit status: 1".to_owned()),
        State::Cancelled => Some("cancelled by SIGINT (packer was asked to stop its build)".to_owned()),
        State::Expired => Some(format!("TTL ended at {expires_at}")),
        _ => None,
    };
    let vm_name = format!("bench-{index}");
    let artifacts = if state == State::Ready {
        vec![Artifact {
            path: Utf8PathBuf::from(format!(
                "/var/lib/sandboxer/sandboxes/{id}/output/{vm_name}.ova"
            )),
            bytes: 1_234_567_890,
            sha256: format!("{:064x}", index * 7_919),
            build: Some("null.example".to_owned()),
        }]
    } else {
        Vec::new()
    };
    let single = |text: &str| Value::Single(text.to_owned());
    let inputs = BTreeMap::from([
        ("mode".to_owned(), single("build")),
        (
            "packer_template".to_owned(),
            single("builtin:examples/ova/ova.pkr.hcl"),
        ),
        ("vm_name".to_owned(), single(&vm_name)),
        ("var.token".to_owned(), single(sandboxer::inputs::REDACTED)),
    ]);
    Record {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned(),
        profile: "profile.vm-packer-build".to_owned(),
        profile_source: "built-in (profiles/profile.vm-packer-build.toml)".to_owned(),
        extension: "ext.vm-packer".to_owned(),
        mode: "build".to_owned(),
        state,
        state_reason,
        created_at,
        updated_at: created_at + SignedDuration::from_secs(95),
        expires_at,
        inputs,
        placement: Placement {
            host: "local".to_owned(),
            slot: Some(u32::try_from(index % 4).unwrap_or(0)),
        },
        owner: None,
        artifacts,
        builds: vec![BuildRun {
            name: "null.example".to_owned(),
            outcome: BuildOutcome::Succeeded,
        }],
        claim: None,
        ssh: None,
        forwarded_ports: Vec::new(),
        torn_down_at: state
            .is_gone()
            .then_some(created_at + SignedDuration::from_mins(10)),
        retention: None,
        pruned_artifacts: Vec::new(),
        provenance: None,
        like: None,
        build_host: None,
        log: Some(Utf8PathBuf::from(format!(
            "/var/lib/sandboxer/sandboxes/{id}/provision.log"
        ))),
    }
}
