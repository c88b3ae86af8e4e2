//! The user config file, `$XDG_CONFIG_HOME/sandboxer/config.toml`: settings that belong to a
//! person rather than a profile: `[state_hub] url` and `[history] retention`.

use anyhow::Context as _;
use camino::Utf8Path;
use serde::Deserialize;
use toml::Spanned;

use crate::duration::Age;
use crate::error::usage;
use crate::profile::line_column;

/// What the config file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// `[state_hub] url`, with `file:line:column` of the value.
    pub state_hub_url: Option<(String, String)>,
    /// `[history] retention`: how long `gc` keeps a torn-down sandbox's record when its profile
    /// sets no `retention`.
    pub retention: Option<Age>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    state_hub: Option<StateHubTable>,
    history: Option<HistoryTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryTable {
    retention: Option<Age>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateHubTable {
    url: Option<Spanned<String>>,
    /// Refused with a clear message: a token never lives in a file others may read or share.
    token: Option<Spanned<toml::Value>>,
}

/// Reads the config file at `path`; a missing file is an empty config.
pub fn load(path: &Utf8Path) -> anyhow::Result<UserConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(UserConfig::default());
        }
        Err(err) => return Err(err).with_context(|| format!("reading {path}")),
    };
    let at = |offset: usize| format!("{path}:{}", line_column(&text, offset));
    let file: File = toml::from_str(&text).map_err(|err| {
        let location = err
            .span()
            .map_or_else(|| path.to_string(), |span| at(span.start));
        usage(format!("{location}: {}", err.message().trim_end()))
    })?;
    let retention = file.history.and_then(|history| history.retention);
    let Some(table) = file.state_hub else {
        return Ok(UserConfig {
            retention,
            ..UserConfig::default()
        });
    };
    if let Some(token) = table.token {
        return Err(usage(format!(
            "{}: the State Hub token is not read from the config file; set STATE_HUB_TOKEN, or STATE_HUB_TOKEN_FILE to a file only you can read",
            at(token.span().start)
        )));
    }
    Ok(UserConfig {
        state_hub_url: table.url.map(|url| {
            let location = at(url.span().start);
            (url.into_inner(), location)
        }),
        retention,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<UserConfig> {
        let temp = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(temp.path())
            .unwrap()
            .join("config.toml");
        std::fs::write(&path, text).unwrap();
        let unlocated = |text: String| text.replace(path.as_str(), "config.toml");
        load(&path)
            .map(|config| UserConfig {
                state_hub_url: config.state_hub_url.map(|(url, at)| (url, unlocated(at))),
                ..config
            })
            .map_err(|err| anyhow::anyhow!("{}", unlocated(err.to_string())))
    }

    #[test]
    fn the_url_with_its_location() {
        let config = load_text("[state_hub]\nurl = \"https://hub.example\"\n").unwrap();
        assert_eq!(
            config.state_hub_url,
            Some(("https://hub.example".into(), "config.toml:2:7".into()))
        );
        assert_eq!(
            load(Utf8Path::new("/nonexistent/config.toml")).unwrap(),
            UserConfig::default()
        );
    }

    #[test]
    fn history_retention() {
        let config = load_text("[history]\nretention = \"90d\"\n").unwrap();
        assert_eq!(config.retention, Some(Age::from_secs(90 * 24 * 3600)));
        assert_eq!(config.retention.unwrap().to_string(), "90d");
        let zero = load_text("[history]\nretention = \"0s\"\n").unwrap();
        assert_eq!(zero.retention, Some(Age::from_secs(0)));
        let err = load_text("[history]\nretention = \"30x\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config.toml:2:13: invalid retention \"30x\""),
            "{err}"
        );
        let err = load_text("[history]\nretension = \"30d\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config.toml:2:1: unknown field `retension`"),
            "{err}"
        );
    }

    #[test]
    fn a_token_or_a_stray_key_is_a_located_error() {
        let err = load_text("[state_hub]\nurl = \"https://h\"\ntoken = \"s3cret\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config.toml:3:9: the State Hub token is not read"),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"));
        let err = load_text("[state_hub]\nulr = \"https://h\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config.toml:2:1: unknown field `ulr`"),
            "{err}"
        );
    }
}
