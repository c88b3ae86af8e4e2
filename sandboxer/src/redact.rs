//! Hiding secret values in text that gets written down or sent anywhere.

use std::borrow::Cow;

use crate::inputs::REDACTED;

/// How a tool writes text in its output (Packer escapes `,` and newlines), so that a secret is
/// found there in that form too.
pub type Escape = fn(&str) -> String;

/// Replaces every occurrence of a set of secrets, as they are and in each escaped form given.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    needles: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>, escapes: &[Escape]) -> Self {
        let mut needles: Vec<String> = secrets
            .into_iter()
            .filter(|secret| !secret.is_empty())
            .flat_map(|secret| {
                let escaped: Vec<String> = escapes.iter().map(|escape| escape(&secret)).collect();
                std::iter::once(secret).chain(escaped)
            })
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Redactor { needles }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = Cow::Owned(text.replace(needle.as_str(), REDACTED));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packer_escape(text: &str) -> String {
        text.replace(',', "%!(PACKER_COMMA)")
    }

    #[test]
    fn hides_plain_and_escaped_secrets() {
        let redactor = Redactor::new(["pa,ss".to_owned(), String::new()], &[packer_escape]);
        assert_eq!(redactor.redact("x pa,ss y"), "x <redacted> y");
        assert_eq!(
            redactor.redact("1,,ui,message,pa%!(PACKER_COMMA)ss"),
            "1,,ui,message,<redacted>"
        );
        assert!(matches!(redactor.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn longer_secrets_win() {
        let redactor = Redactor::new(["abc".to_owned(), "abcdef".to_owned()], &[]);
        assert_eq!(redactor.redact("abcdef abc"), "<redacted> <redacted>");
    }
}
