//! What the fuzz targets check, one function per parser of hostile input: it must never panic,
//! and what it accepts or rejects must make sense (a located usage error, a value that prints
//! back to itself, a secret that never survives redaction).
//!
//! Shared, by `#[path]`, with `sandboxer/tests/it/fuzz.rs`, which replays the checked-in corpus
//! and every past crash (`fuzz/regressions/<target>/`) on the stable toolchain in `cargo test`.

use std::str::FromStr as _;

use sandboxer::duration::{self, Ttl};
use sandboxer::error::{ErrorKind, kind_of};
use sandboxer::ext::vm_packer::machine_readable::{self, Report};
use sandboxer::profile::{self, Source};
use sandboxer::redact::Redactor;

/// A fuzz target's check: panics when the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the directory of its corpus) and its check.
pub const TARGETS: [(&str, Check); 5] = [
    ("profile", profile),
    ("input", input),
    ("duration", duration),
    ("record", record),
    ("machine_readable", machine_readable),
];

/// `profile::parse`, the profile parser and validator: an invalid profile is a usage error
/// located in the file.
pub fn profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // profiles are read as UTF-8 first; invalid UTF-8 never gets here
    };
    match profile::parse(text, "fuzz.toml", Source::File("fuzz.toml".into())) {
        Ok(profile) => {
            assert!(!profile.id.is_empty());
            // One host, or the pool (with its labels): never both, never neither.
            assert_eq!(
                profile.placement.pool,
                profile.placement.host.is_empty(),
                "{text:?}"
            );
            assert!(profile.placement.pool || profile.placement.labels.is_empty());
        }
        Err(err) => {
            let message = format!("{err:#}");
            assert_eq!(kind_of(&err), ErrorKind::Usage, "{message}");
            assert!(message.starts_with("fuzz.toml"), "not located: {message}");
        }
    }
}

/// `--input KEY=VALUE` and `KEY+=VALUE`: the key is what precedes the first `=` (less a `+`
/// that appends), trimmed and not empty; the value is the rest, exactly.
pub fn input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // clap refuses non-UTF-8 arguments before the parser sees them
    };
    match sandboxer::inputs::parse_assignment(text) {
        Ok(assignment) => {
            let (raw_key, raw_value) = text.split_once('=').expect("an accepted input has `=`");
            let raw_name = match raw_key.strip_suffix('+') {
                Some(name) => {
                    assert!(assignment.append, "{text:?}");
                    name
                }
                None => raw_key,
            };
            assert_eq!(assignment.name, raw_name.trim());
            assert!(!assignment.name.is_empty() && !assignment.name.contains('='));
            assert_eq!(assignment.value, raw_value);
        }
        Err(message) => assert!(message.contains("KEY=VALUE"), "{message}"),
    }
}

/// Durations: a TTL is positive, at most 10 years, and prints back to itself.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Ttl::from_str(text) {
        Ok(ttl) => {
            let secs = ttl.as_duration().as_secs();
            assert!(secs > 0 && secs <= 10 * 365 * 24 * 3600, "{text:?}: {secs}");
            assert_eq!(Ttl::from_str(&ttl.to_string()), Ok(ttl), "{text:?}");
        }
        Err(message) => assert!(message.contains("TTL"), "{message}"),
    }
    if let Ok(secs) = duration::parse_secs(text, "cancel timeout") {
        assert!(
            (0..=10 * 365 * 24 * 3600).contains(&secs),
            "{text:?}: {secs}"
        );
    }
}

/// A record as read from disk: accepted only if it round-trips unchanged, so a rewrite by
/// `Registry::update` never loses or changes a field.
pub fn record(data: &[u8]) {
    if let Ok(record) = sandboxer::record::parse(data) {
        let written = serde_json::to_vec_pretty(&record).expect("a record serializes");
        let reread = sandboxer::record::parse(&written).expect("a written record reads back");
        assert_eq!(reread, record);
    }
}

/// Packer's machine-readable stream, redacted as the log and the terminal see it. The first
/// line of the input is the secret (letters, digits and commas; a default otherwise), the rest
/// the stream.
pub fn machine_readable(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, stream) = text.split_once('\n').unwrap_or(("", &text));
    let secret = if !first.is_empty()
        && first.len() <= 64
        && first.chars().all(|c| c.is_ascii_alphanumeric() || c == ',')
    {
        first
    } else {
        "s3cr,et"
    };
    let escaped = machine_readable::encode(secret);
    let redactor = Redactor::new([secret.to_owned()], &[machine_readable::encode]);
    let mut report = Report::default();
    for raw in stream.split_inclusive('\n') {
        let line = redactor.redact(raw);
        // `<redacted>` shares no character with such a secret but letters, so an occurrence can
        // only hide inside a marker, never span one.
        for piece in line.split(sandboxer::inputs::REDACTED) {
            assert!(
                !piece.contains(secret) && !piece.contains(escaped.as_str()),
                "{secret:?} survived redaction in {line:?}"
            );
        }
        // A line cut short (sandboxer keeps 64 KiB of a line) never ends in a secret's head.
        let mut half = raw.len() / 2;
        while !raw.is_char_boundary(half) {
            half -= 1;
        }
        let cut = redactor.redact_cut(&raw[..half]);
        for needle in [secret, escaped.as_str()] {
            for len in (1..needle.len()).filter(|len| needle.is_char_boundary(*len)) {
                assert!(
                    !cut.ends_with(&needle[..len]),
                    "the head of {needle:?} survived a cut: {cut:?}"
                );
            }
        }
        if let Some(parsed) = machine_readable::parse_line(&line) {
            assert!(!parsed.kind.is_empty());
        }
        report.observe(&line, |_| {});
        let payload = raw.trim_end_matches(['\n', '\r']);
        // Packer's escaping round-trips for text without literal escape sequences in it.
        if !["%!(PACKER_COMMA)", "\\n", "\\r", "\n", "\r"]
            .iter()
            .any(|escape| payload.contains(escape))
        {
            let encoded = format!("1,,ui,say,{}", machine_readable::encode(payload));
            let parsed = machine_readable::parse_line(&encoded).expect("an encoded line parses");
            assert_eq!(parsed.data, ["say", payload]);
        }
    }
    // Memory stays bounded whatever the stream holds.
    assert!(report.ui_errors.len() <= 20 && report.build_errors.len() <= 20);
    assert!(report.stray_lines.len() <= 20);
    let _ = report.failure_lines();
}
