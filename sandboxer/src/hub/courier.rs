//! One delivery attempt to State Hub, and what to do after it: `POST {url}/v1/events` with a
//! batch of CloudEvents, read as delivered, retry later (timeouts, connection errors, 5xx,
//! 429 with its `Retry-After`), or refused for the rest of the run (401/403, other 4xx,
//! redirects, which are never followed).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Endpoint;
use crate::redact::Redactor;

/// A single request may take this long before it counts as failed (and is retried).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The first retry waits up to this long (full jitter), doubling per attempt up to the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this is taken as this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// How an attempt went.
#[derive(Debug)]
pub enum Attempt {
    Delivered {
        took: Duration,
    },
    /// Try again, no sooner than `after` when State Hub said so (429/503 `Retry-After`).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Do not try again in this run: State Hub refused the events or the token.
    Refused {
        error: String,
    },
}

/// Sends batches to one endpoint.
pub struct Courier {
    client: reqwest::blocking::Client,
    events_url: reqwest::Url,
    endpoint: Endpoint,
    /// Hides the token in any error text, whatever produced it.
    redactor: Redactor,
}

impl std::fmt::Debug for Courier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Courier")
            .field("events_url", &self.events_url.as_str())
            .finish()
    }
}

impl Courier {
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<Courier> {
        let mut builder = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sandboxer/", env!("CARGO_PKG_VERSION")));
        if endpoint.is_loopback() {
            // A proxy would carry the token off this machine over plain HTTP.
            builder = builder.no_proxy();
        }
        let client = builder.build().context("setting up the State Hub client")?;
        Ok(Courier {
            client,
            events_url: endpoint.events_url(),
            redactor: Redactor::new(endpoint.token.iter().map(|t| t.reveal().to_owned()), &[]),
            endpoint: endpoint.clone(),
        })
    }

    /// POSTs `events` (CloudEvent JSON objects) as one batch. The `Idempotency-Key` is the id of
    /// the batch's last event: batches always start at the oldest undelivered event, so one key
    /// always names the same batch, however often it is resent.
    pub fn post(&self, events: &[&str], last_id: &str) -> Attempt {
        let mut body = String::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(event);
        }
        body.push(']');
        let mut request = self
            .client
            .post(self.events_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/cloudevents-batch+json",
            )
            .header("Idempotency-Key", last_id)
            .body(body);
        if let Some(token) = &self.endpoint.token {
            request = request.bearer_auth(token.reveal());
        }
        let started = Instant::now();
        let response = match request.send() {
            Ok(response) => response,
            Err(err) => {
                let what = if err.is_timeout() {
                    format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
                } else if err.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                return Attempt::Retry {
                    error: self.error(&format!("{what}: {}", error_chain(&err))),
                    after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered {
                took: started.elapsed(),
            };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let said = response
            .text()
            .ok()
            .map(|text| text.trim().chars().take(200).collect::<String>())
            .filter(|text| !text.is_empty())
            .map(|text| format!(": {text}"))
            .unwrap_or_default();
        let code = status.as_u16();
        let answered = format!("State Hub answered {status}{said}");
        if status.is_redirection() {
            let to = location.map(|to| format!(" to {to}")).unwrap_or_default();
            Attempt::Refused {
                error: self.error(&format!(
                    "State Hub answered {status} (a redirect{to}); redirects are not followed: set STATE_HUB_URL to the final address"
                )),
            }
        } else if code == 401 || code == 403 {
            Attempt::Refused {
                error: self.error(&format!(
                    "{answered}; check STATE_HUB_TOKEN (or the file STATE_HUB_TOKEN_FILE names)"
                )),
            }
        } else if code == 429 || code == 408 || status.is_server_error() {
            Attempt::Retry {
                error: self.error(&answered),
                after: retry_after,
            }
        } else {
            Attempt::Refused {
                error: self.error(&answered),
            }
        }
    }

    /// An error text with the endpoint named and the token, should anything echo it, hidden.
    fn error(&self, text: &str) -> String {
        self.redactor
            .redact(&format!("{} ({})", text, self.events_url))
            .into_owned()
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let after = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        let now = jiff::Timestamp::now();
        Duration::try_from(when.duration_since(now)).unwrap_or(Duration::ZERO)
    };
    Some(after.min(RETRY_AFTER_CAP))
}

/// Exponential backoff with full jitter: a random wait between zero and `base * 2^attempt`
/// (capped), so many senders retrying at once spread out.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The wait before the next retry; a `Retry-After` from State Hub wins over the jitter.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << self.attempt.min(16))
            .min(BACKOFF_CAP);
        self.attempt += 1;
        match retry_after {
            Some(after) => after,
            None => ceiling.mul_f64(fastrand::f64()),
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Retries so far since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("99999"), Some(RETRY_AFTER_CAP));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_honours_retry_after() {
        let mut backoff = Backoff::default();
        for attempt in 0..20 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_CAP);
            assert!(backoff.next(None) <= ceiling);
        }
        assert_eq!(
            backoff.next(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
    }
}
