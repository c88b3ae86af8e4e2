//! Published events as CloudEvents 1.0 (structured JSON): the one envelope State Hub receives
//! and `create --progress=jsonl` prints, one per line.

use std::io::Write as _;

use serde_json::{Map, Value, json};

use super::{Event, Kind, Published, Sink};

/// The prefix of every event type (`dev.sandboxer.sandbox.step.started`).
pub const TYPE_PREFIX: &str = "dev.sandboxer.sandbox.";

/// Where events come from and whose work they belong to; the same for every event of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `sandboxer://<hostname>`.
    pub source: String,
    /// The State Hub workstream and task the sandbox's events belong to, when named.
    pub workstream: Option<String>,
    pub task: Option<String>,
}

impl Origin {
    pub fn new(hostname: &str, workstream: Option<String>, task: Option<String>) -> Origin {
        Origin {
            source: format!("sandboxer://{hostname}"),
            workstream,
            task,
        }
    }
}

/// The event's `type` without [`TYPE_PREFIX`].
pub fn short_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::Created { .. } => "created",
        Kind::Queued { .. } => "queued",
        Kind::ProvisioningStarted { .. } => "provisioning.started",
        Kind::StepStarted(_) => "step.started",
        Kind::StepFinished { .. } => "step.finished",
        Kind::Note { .. } => "note",
        Kind::Heartbeat { .. } => "heartbeat",
        Kind::Artifact { .. } => "artifact.produced",
        Kind::Finished { .. } => "finished",
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The event's `data`: the sandbox id, its sequence number, the workstream and task when named,
/// and the fields of its kind (documented in `docs/state-hub.md`).
fn data(event: &Published) -> Value {
    let origin = &event.origin;
    let mut data = Map::new();
    data.insert("sandbox".into(), json!(&*event.sandbox));
    data.insert("seq".into(), json!(event.seq));
    if let Some(workstream) = &origin.workstream {
        data.insert("workstream".into(), json!(workstream));
    }
    if let Some(task) = &origin.task {
        data.insert("task".into(), json!(task));
    }
    let fields = match &event.kind {
        Kind::Created {
            profile,
            extension,
            mode,
            placement_host,
            expires_at,
        } => json!({
            "profile": profile, "extension": extension, "mode": mode,
            "placement_host": placement_host, "expires_at": expires_at.to_string(),
        }),
        Kind::Queued {
            placement_host,
            place,
        } => json!({"placement_host": placement_host, "place": place}),
        Kind::ProvisioningStarted {
            placement_host,
            slot,
        } => json!({"placement_host": placement_host, "slot": slot}),
        Kind::StepStarted(step) => {
            json!({"build": step.build, "step": step.kind.as_str(), "name": step.name})
        }
        Kind::StepFinished {
            step,
            outcome,
            error,
            duration,
        } => json!({
            "build": step.build, "step": step.kind.as_str(), "name": step.name,
            "outcome": outcome.as_str(), "error": error, "duration_ms": millis(*duration),
        }),
        Kind::Note { message } => json!({"message": message}),
        Kind::Heartbeat { step, silent } => json!({
            "step": step, "silent_ms": millis(*silent),
            "message": format!("still running {step}"),
        }),
        Kind::Artifact {
            path,
            bytes,
            sha256,
        } => json!({"path": path, "bytes": bytes, "sha256": sha256}),
        Kind::Finished {
            state,
            duration,
            reason,
        } => json!({
            "state": state.as_str(), "duration_ms": millis(*duration), "reason": reason,
        }),
    };
    if let Value::Object(fields) = fields {
        data.extend(fields);
    }
    Value::Object(data)
}

/// The structured CloudEvent for `event`.
pub fn envelope(event: &Published) -> Value {
    json!({
        "specversion": "1.0",
        "id": event.id.to_string(),
        "source": event.origin.source,
        "type": format!("{TYPE_PREFIX}{}", short_type(&event.kind)),
        "time": event.time.to_string(),
        "subject": &*event.sandbox,
        "datacontenttype": "application/json",
        "data": data(event),
    })
}

/// `--progress=jsonl`: each published event as one line of JSON on stdout, flushed at once so
/// a reader sees it as it happens.
#[derive(Debug, Default)]
pub struct JsonLines;

impl Sink for JsonLines {
    fn emit(&mut self, event: &Event) {
        let Event::Published(event) = event else {
            return;
        };
        let mut line = envelope(event).to_string();
        line.push('\n');
        let mut stdout = std::io::stdout().lock();
        // A closed stdout must not fail the build; the CLI reports it at the end.
        let _ = stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Stamper, Step, StepKind};

    #[test]
    fn envelopes_are_cloudevents_with_the_sandbox_and_sequence() {
        let origin = Origin::new("host", Some("ws-1".into()), None);
        let mut stamper = Stamper::new("sb-1", origin);
        let first = stamper.stamp(Kind::StepStarted(Step {
            build: "null.a".into(),
            kind: StepKind::PostProcessor,
            name: "shell-local".into(),
        }));
        let second = stamper.stamp(Kind::Note {
            message: "hi".into(),
        });
        let value = envelope(&first);
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["type"], "dev.sandboxer.sandbox.step.started");
        assert_eq!(value["source"], "sandboxer://host");
        assert_eq!(value["subject"], "sb-1");
        assert_eq!(value["data"]["seq"], 1);
        assert_eq!(value["data"]["step"], "post-processor");
        assert_eq!(value["data"]["workstream"], "ws-1");
        assert!(value["data"].get("task").is_none());
        assert_eq!(envelope(&second)["data"]["seq"], 2);
        assert!(first.id < second.id, "ids are time-ordered");
        assert_eq!(first.id.get_version_num(), 7);
    }
}
