//! State Hub, the tracking service that receives every sandbox's published events: where it is
//! and with which token (`Endpoint`), the delivery worker of a create (`live`), the spool of
//! undelivered events (`spool`), single delivery attempts and their retry policy (`courier`),
//! and `hub status` / `hub flush`.
//!
//! State Hub being slow, wrong or down never slows, fails or loses a build: events are spooled
//! before they are sent, sent from a worker thread, and what is not delivered by the end of a
//! create waits in the spool for the next create or `hub flush`.

pub mod courier;
pub mod live;
pub mod spool;

use std::sync::Arc;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::usage;
use courier::{Attempt, Backoff, Courier};
use spool::{Entry, Spool};

/// At most this many events go in one request.
pub const MAX_BATCH: usize = 20;

/// The State Hub workstream and task a sandbox's events belong to; they travel in each event's
/// `data`. From a profile's `[state_hub]` table, overridden by `--input state_hub_workstream=`
/// and `--input state_hub_task=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub workstream: Option<String>,
    pub task: Option<String>,
}

/// The inputs that name the [`Labels`] on the command line; sandboxer's own, not an extension's.
pub const WORKSTREAM_INPUT: &str = "state_hub_workstream";
pub const TASK_INPUT: &str = "state_hub_task";

/// The bearer token; never printed, logged, recorded or spooled.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where State Hub is, and the token to show it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: reqwest::Url,
    pub token: Option<Token>,
}

/// Reports a problem from a background thread (the CLI prints it).
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// State Hub as configured for one command.
#[derive(Clone, Default)]
pub struct Settings {
    /// `None`: State Hub is off.
    pub endpoint: Option<Endpoint>,
    /// How delivery problems reach the person; dropped when unset.
    pub warn: Option<Warn>,
    /// Where the URL came from (`STATE_HUB_URL`, a config file), for messages.
    pub url_from: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("url_from", &self.url_from)
            .finish()
    }
}

impl Settings {
    pub fn warn(&self, text: &str) {
        if let Some(warn) = &self.warn {
            warn(text);
        }
    }
}

/// Where the settings come from: the environment (read by the CLI) and the user config file.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `STATE_HUB_URL`.
    pub url: Option<String>,
    /// `STATE_HUB_TOKEN`.
    pub token: Option<String>,
    /// `STATE_HUB_TOKEN_FILE`.
    pub token_file: Option<Utf8PathBuf>,
    /// `[state_hub] url` from the user config file, with where it was written.
    pub config_url: Option<(String, String)>,
}

/// Works out the endpoint: the URL from `STATE_HUB_URL`, else the config file; the token from
/// `STATE_HUB_TOKEN`, else the file `STATE_HUB_TOKEN_FILE` names. No URL: State Hub is off.
pub fn resolve(sources: &Sources) -> anyhow::Result<Settings> {
    let (url, url_from) = match (&sources.url, &sources.config_url) {
        (Some(url), _) => (url.clone(), "STATE_HUB_URL".to_owned()),
        (None, Some((url, location))) => (url.clone(), location.clone()),
        (None, None) => return Ok(Settings::default()),
    };
    let token = match (&sources.token, &sources.token_file) {
        (Some(token), _) => Some(check_token(token.clone(), "STATE_HUB_TOKEN")?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                usage(format!(
                    "STATE_HUB_TOKEN_FILE={path}: cannot read it: {err}"
                ))
            })?;
            let token = text.trim_end_matches(['\n', '\r']).to_owned();
            Some(check_token(
                token,
                &format!("the token in STATE_HUB_TOKEN_FILE={path}"),
            )?)
        }
        (None, None) => None,
    };
    let endpoint = Endpoint::new(&url, token, &url_from)?;
    Ok(Settings {
        endpoint: Some(endpoint),
        warn: None,
        url_from,
    })
}

fn check_token(token: String, what: &str) -> anyhow::Result<Token> {
    if token.is_empty() {
        return Err(usage(format!("{what} is empty")));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(usage(format!(
            "{what} holds characters an HTTP header cannot carry (spaces, control or non-ASCII characters)"
        )));
    }
    Ok(Token(token))
}

impl Endpoint {
    /// Checks a State Hub URL; `from` names where it was given, for errors.
    pub fn new(url: &str, token: Option<Token>, from: &str) -> anyhow::Result<Endpoint> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|err| usage(format!("{from}: {url:?} is not a URL: {err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(usage(format!(
                "{from}: {url:?} must start with https:// (or http:// for a State Hub on this machine)"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(usage(format!(
                "{from}: the State Hub URL must not carry a user or password; give the token in STATE_HUB_TOKEN or STATE_HUB_TOKEN_FILE"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(usage(format!(
                "{from}: {url:?} must not have a query or fragment; sandboxer appends /v1/events to it"
            )));
        }
        let endpoint = Endpoint { url: parsed, token };
        if endpoint.token.is_some() && endpoint.url.scheme() == "http" && !endpoint.is_loopback() {
            return Err(usage(format!(
                "{from}: refusing to send the State Hub token over plain http:// to {}; use https://, or a loopback address (127.0.0.1, ::1, localhost) for a State Hub on this machine",
                endpoint.url.host_str().unwrap_or_default()
            )));
        }
        Ok(endpoint)
    }

    /// Whether the host is this machine's loopback.
    pub fn is_loopback(&self) -> bool {
        match self.url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => {
                name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost")
            }
            None => false,
        }
    }

    /// `{url}/v1/events`.
    pub fn events_url(&self) -> reqwest::Url {
        let mut url = self.url.clone();
        let path = format!("{}/v1/events", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }
}

/// The last delivery error and the last delivery, kept in `<state>/hub/last-delivery.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivered_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: Timestamp,
    pub message: String,
}

fn health_path(state_dir: &Utf8Path) -> Utf8PathBuf {
    state_dir.join("hub").join("last-delivery.json")
}

impl Health {
    pub fn load(state_dir: &Utf8Path) -> Health {
        std::fs::read(health_path(state_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn update(state_dir: &Utf8Path, change: impl FnOnce(&mut Health)) {
        let mut health = Health::load(state_dir);
        change(&mut health);
        if let Ok(mut json) = serde_json::to_vec_pretty(&health) {
            json.push(b'\n');
            // Best effort: losing this note loses a diagnostic, never an event.
            let _ = std::fs::create_dir_all(state_dir.join("hub"));
            let _ = crate::files::write_atomically(&health_path(state_dir), &json);
        }
    }

    pub fn record_error(state_dir: &Utf8Path, message: &str) {
        Health::update(state_dir, |health| {
            health.last_error = Some(LastError {
                at: Timestamp::now(),
                message: message.to_owned(),
            });
        });
    }

    pub fn record_delivery(state_dir: &Utf8Path) {
        Health::update(state_dir, |health| {
            health.last_delivered_at = Some(Timestamp::now());
        });
    }
}

/// Sends the first batch of `pending` and, once State Hub has it, marks it delivered in the
/// spool and drops it from `pending`.
pub fn deliver_batch(
    courier: &Courier,
    spool: &mut Spool,
    pending: &mut std::collections::VecDeque<Entry>,
) -> Attempt {
    let count = pending.len().min(MAX_BATCH);
    let batch: Vec<&str> = pending
        .iter()
        .take(count)
        .map(|e| e.json.as_str())
        .collect();
    let Some(last) = pending.get(count.saturating_sub(1)) else {
        return Attempt::Delivered {
            took: std::time::Duration::ZERO,
        };
    };
    let attempt = courier.post(&batch, &event_id(&last.json));
    if let Attempt::Delivered { .. } = attempt {
        let through = last.seq;
        pending.drain(..count);
        if let Err(err) = spool.append_delivered(through) {
            // The events did arrive; the next replay may resend them, under the same keys.
            return Attempt::Refused {
                error: format!("{err:#}"),
            };
        }
    }
    attempt
}

/// The `id` of a CloudEvent as spooled.
fn event_id(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|value| value.get("id")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What `hub status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `None` when State Hub is off.
    pub url: Option<String>,
    pub url_from: Option<String>,
    pub token: bool,
    pub waiting: Vec<WaitingSandbox>,
    #[serde(flatten)]
    pub health: Health,
}

#[derive(Debug, Serialize)]
pub struct WaitingSandbox {
    pub sandbox: String,
    pub events: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    /// A running sandboxer is delivering them now.
    pub in_use: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The configured URL, what waits in the spool per sandbox, and the last delivery error.
pub fn status(state_dir: &Utf8Path, settings: &Settings) -> anyhow::Result<Status> {
    let mut waiting = Vec::new();
    for file in spool::survey(state_dir)? {
        let (events, oldest, error) = match &file.events {
            Ok(events) => (
                events.len(),
                events.front().and_then(|entry| {
                    let value: serde_json::Value = serde_json::from_str(&entry.json).ok()?;
                    value.get("time")?.as_str().map(str::to_owned)
                }),
                None,
            ),
            Err(err) => (0, None, Some(err.clone())),
        };
        if events == 0 && error.is_none() && !file.in_use {
            continue; // everything delivered; removed by the next flush
        }
        waiting.push(WaitingSandbox {
            sandbox: file.sandbox,
            events,
            oldest,
            in_use: file.in_use,
            error,
        });
    }
    Ok(Status {
        url: settings.endpoint.as_ref().map(|e| e.url.to_string()),
        url_from: settings
            .endpoint
            .as_ref()
            .map(|_| settings.url_from.clone()),
        token: settings
            .endpoint
            .as_ref()
            .is_some_and(|e| e.token.is_some()),
        waiting,
        health: Health::load(state_dir),
    })
}

/// How a flush went for one sandbox's spool.
#[derive(Debug, Serialize)]
pub struct Flushed {
    pub sandbox: String,
    pub delivered: usize,
    pub waiting: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A flush retries a batch this many times before giving up.
const FLUSH_RETRIES: u32 = 5;

/// Delivers every spooled event, sandbox by sandbox, each in order; removes spool files as they
/// empty. Spools a running create is delivering from are skipped. Stops at the first refusal,
/// or when State Hub stays unreachable.
pub fn flush(state_dir: &Utf8Path, endpoint: &Endpoint) -> anyhow::Result<Vec<Flushed>> {
    let courier = Courier::new(endpoint)?;
    let mut report = Vec::new();
    for path in spool::list(state_dir)? {
        let sandbox = spool::sandbox_of(&path);
        let Some(mut spool) = spool::try_take(&path)? else {
            report.push(Flushed {
                sandbox,
                delivered: 0,
                waiting: 0,
                skipped: Some("a running sandboxer is delivering these".to_owned()),
            });
            continue;
        };
        let mut pending = spool.pending()?;
        let total = pending.len();
        let mut backoff = Backoff::default();
        while !pending.is_empty() {
            match deliver_batch(&courier, &mut spool, &mut pending) {
                Attempt::Delivered { .. } => backoff.reset(),
                Attempt::Retry { error, after } => {
                    if backoff.attempts() >= FLUSH_RETRIES {
                        Health::record_error(state_dir, &error);
                        return Err(anyhow::anyhow!(
                            "{error}; gave up after {} retries with {} events of {sandbox} still waiting",
                            FLUSH_RETRIES,
                            pending.len()
                        ));
                    }
                    std::thread::sleep(backoff.next(after));
                }
                Attempt::Refused { error } => {
                    Health::record_error(state_dir, &error);
                    return Err(anyhow::anyhow!(
                        "{error}; {} events of {sandbox} still waiting",
                        pending.len()
                    ));
                }
            }
        }
        if total > 0 {
            Health::record_delivery(state_dir);
        }
        spool
            .remove()
            .with_context(|| format!("removing the emptied spool of {sandbox}"))?;
        report.push(Flushed {
            sandbox,
            delivered: total,
            waiting: 0,
            skipped: None,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Option<Token> {
        Some(Token("t0ken".into()))
    }

    #[test]
    fn the_token_goes_over_http_only_to_loopback() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3/hub/",
            "http://[::1]:9000",
            "http://localhost:1",
            "https://hub.example.com",
        ] {
            Endpoint::new(url, token(), "STATE_HUB_URL").unwrap();
        }
        let err = Endpoint::new("http://hub.example.com", token(), "STATE_HUB_URL")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing to send the State Hub token over plain http://"),
            "{err}"
        );
        assert!(!err.contains("t0ken"));
        // Without a token there is nothing to protect.
        Endpoint::new("http://hub.example.com", None, "STATE_HUB_URL").unwrap();
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for (url, expected) in [
            ("hub.example.com", "is not a URL"),
            ("ftp://hub.example.com", "must start with https://"),
            (
                "https://me:pw@hub.example.com",
                "must not carry a user or password",
            ),
            ("https://hub.example.com/?x=1", "must not have a query"),
        ] {
            let err = Endpoint::new(url, None, "STATE_HUB_URL").unwrap_err();
            assert!(err.to_string().contains(expected), "{url}: {err}");
            assert_eq!(crate::error::kind_of(&err), crate::error::ErrorKind::Usage);
        }
    }

    #[test]
    fn events_url_appends_to_the_path() {
        let endpoint = Endpoint::new("https://h.example/base/", None, "x").unwrap();
        assert_eq!(
            endpoint.events_url().as_str(),
            "https://h.example/base/v1/events"
        );
        let endpoint = Endpoint::new("https://h.example", None, "x").unwrap();
        assert_eq!(
            endpoint.events_url().as_str(),
            "https://h.example/v1/events"
        );
    }

    #[test]
    fn the_token_is_never_debug_printed() {
        let settings = resolve(&Sources {
            url: Some("https://h.example".into()),
            token: Some("s3cret-token".into()),
            ..Sources::default()
        })
        .unwrap();
        assert!(!format!("{settings:?}").contains("s3cret-token"));
        let err = resolve(&Sources {
            url: Some("https://h.example".into()),
            token: Some("bad token".into()),
            ..Sources::default()
        })
        .unwrap_err();
        assert!(!err.to_string().contains("bad token"), "{err}");
    }
}
