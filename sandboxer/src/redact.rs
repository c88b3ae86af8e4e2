//! Hiding secret values in text that gets written down or sent anywhere.

use std::borrow::Cow;

use crate::inputs::REDACTED;

/// How a tool writes text in its output (Packer escapes `,` and newlines), so that a secret is
/// found there in that form too.
pub type Escape = fn(&str) -> String;

/// Replaces every occurrence of a set of secrets, as they are and in each escaped form given.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole. Each is searched
    /// with a prebuilt SIMD substring finder: redaction runs on every line a build prints.
    needles: Vec<memchr::memmem::Finder<'static>>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>, escapes: &[Escape]) -> Self {
        let mut needles: Vec<String> = secrets
            .into_iter()
            .flat_map(|secret| {
                // A multi-line secret (a key, a certificate) reaches logs a line at a time, as
                // the tools that print it print lines: each of its lines is a secret too.
                let lines: Vec<String> = if secret.contains('\n') {
                    secret.lines().map(str::to_owned).collect()
                } else {
                    Vec::new()
                };
                std::iter::once(secret).chain(lines)
            })
            .filter(|secret| !secret.is_empty())
            .flat_map(|secret| {
                let escaped: Vec<String> = escapes.iter().map(|escape| escape(&secret)).collect();
                std::iter::once(secret).chain(escaped)
            })
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let needles = needles
            .iter()
            .map(|needle| memchr::memmem::Finder::new(needle.as_bytes()).into_owned())
            .collect();
        Redactor { needles }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for needle in &self.needles {
            if needle.find(text.as_bytes()).is_none() {
                continue;
            }
            let mut replaced = String::with_capacity(text.len());
            let mut rest = 0;
            for at in needle.find_iter(text.as_bytes()) {
                // Non-overlapping, left to right, as `str::replace`; `at` is a char boundary
                // because the needle is valid UTF-8 and starts with a char's first byte.
                if at < rest {
                    continue;
                }
                replaced.push_str(&text[rest..at]);
                replaced.push_str(REDACTED);
                rest = at + needle.needle().len();
            }
            replaced.push_str(&text[rest..]);
            text = Cow::Owned(replaced);
        }
        text
    }

    /// Like [`Redactor::redact`], for text cut short (a line longer than a tool's output is
    /// kept): a secret that began before the cut has only its head left, which `redact` would
    /// not recognise, so a tail that starts any secret is hidden too.
    pub fn redact_cut<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let redacted = self.redact(text);
        let tail = self
            .needles
            .iter()
            .filter_map(|needle| {
                let needle = std::str::from_utf8(needle.needle()).ok()?;
                // Proper prefixes, longest first, cut at character boundaries.
                let mut lengths: Vec<usize> =
                    needle.char_indices().map(|(at, _)| at).skip(1).collect();
                lengths.reverse();
                lengths
                    .into_iter()
                    .find(|&len| redacted.ends_with(&needle[..len]))
            })
            .max();
        match tail {
            Some(len) => {
                let keep = &redacted[..redacted.len() - len];
                Cow::Owned(format!("{keep}{REDACTED}"))
            }
            None => redacted,
        }
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
    fn multi_line_secrets_are_hidden_line_by_line() {
        // Packer's escaping in full: `,` and line ends.
        let escape: Escape = |text| {
            packer_escape(text)
                .replace('\n', "\\n")
                .replace('\r', "\\r")
        };
        let redactor = Redactor::new(["first,line\r\n\nsecond line\n".to_owned()], &[escape]);
        // Whole, as one escaped field of a machine-readable line ...
        assert_eq!(
            redactor.redact("1,,ui,error,open first%!(PACKER_COMMA)line\\r\\n\\nsecond line\\n"),
            "1,,ui,error,open <redacted>"
        );
        // ... and line by line, as a script prints it.
        assert_eq!(
            redactor.redact("1,,ui,message,    null.x: token=first%!(PACKER_COMMA)line"),
            "1,,ui,message,    null.x: token=<redacted>"
        );
        assert_eq!(
            redactor.redact("1,,ui,message,    null.x: second line"),
            "1,,ui,message,    null.x: <redacted>"
        );
    }

    #[test]
    fn a_secret_cut_short_is_hidden_too() {
        let redactor = Redactor::new(["s3cr,et".to_owned()], &[packer_escape]);
        assert_eq!(redactor.redact_cut("token s3cr"), "token <redacted>");
        assert_eq!(redactor.redact_cut("token s3cr%!(PACK"), "token <redacted>");
        assert_eq!(redactor.redact_cut("a s3cr,et b"), "a <redacted> b");
        assert_eq!(redactor.redact_cut("nothing"), "nothing");
    }

    #[test]
    fn longer_secrets_win() {
        let redactor = Redactor::new(["abc".to_owned(), "abcdef".to_owned()], &[]);
        assert_eq!(redactor.redact("abcdef abc"), "<redacted> <redacted>");
    }
}
