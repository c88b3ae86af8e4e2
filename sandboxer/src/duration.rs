//! Durations as people write them ("45m", "12h", "1h30m"): parsing with errors that name what
//! was being parsed, printing back, and short "time left" texts for tables.

use std::fmt;
use std::str::FromStr;

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const UNITS: [(char, i64); 5] = [
    ('w', 7 * 24 * 3600),
    ('d', 24 * 3600),
    ('h', 3600),
    ('m', 60),
    ('s', 1),
];

/// The longest duration accepted anywhere: beyond it a typo is likelier than intent.
const MAX_SECS: i64 = 10 * 365 * 24 * 3600;

/// Parses a sequence of `<number><unit>` (units s, m, h, d, w) into seconds; zero is allowed.
/// `what` names the value in errors ("TTL", "cancel timeout"), so a bad flag says which it was.
pub fn parse_secs(text: &str, what: &str) -> Result<i64, String> {
    let hint =
        "write a duration such as \"45m\", \"12h\", \"2d\" or \"1h30m\" (units: s, m, h, d, w)";
    if text.trim().is_empty() {
        return Err(format!("empty {what}; {hint}"));
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let Some(&(_, unit_secs)) = UNITS.iter().find(|(unit, _)| *unit == ch) else {
            return Err(format!(
                "invalid {what} {text:?}: unexpected `{ch}`; {hint}"
            ));
        };
        if digits.is_empty() {
            return Err(format!(
                "invalid {what} {text:?}: `{ch}` has no number before it; {hint}"
            ));
        }
        let amount: i64 = digits
            .parse()
            .map_err(|_| format!("invalid {what} {text:?}: number too large"))?;
        total = amount
            .checked_mul(unit_secs)
            .and_then(|secs| total.checked_add(secs))
            .filter(|secs| *secs <= MAX_SECS)
            .ok_or_else(|| format!("invalid {what} {text:?}: longer than 10 years"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid {what} {text:?}: `{digits}` has no unit; {hint}"
        ));
    }
    Ok(total)
}

/// A duration for a timeout or an interval, where zero is meaningful ("at once", "off").
pub fn parse_std(text: &str, what: &str) -> Result<std::time::Duration, String> {
    parse_secs(text, what).map(|secs| std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// Prints seconds back in the form [`parse_secs`] reads ("1h30m"; "0s" for zero).
fn write_secs(f: &mut fmt::Formatter<'_>, secs: i64) -> fmt::Result {
    if secs <= 0 {
        return f.write_str("0s");
    }
    let mut rest = secs;
    for (unit, unit_secs) in UNITS {
        if rest >= unit_secs {
            write!(f, "{}{unit}", rest / unit_secs)?;
            rest %= unit_secs;
        }
    }
    Ok(())
}

/// A time to live: a positive duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(SignedDuration);

impl Ttl {
    pub fn from_secs(secs: i64) -> Self {
        Ttl(SignedDuration::from_secs(secs))
    }

    pub fn as_duration(self) -> SignedDuration {
        self.0
    }
}

impl FromStr for Ttl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match parse_secs(text, "TTL")? {
            0 => Err(format!("invalid TTL {text:?}: must be longer than zero")),
            secs => Ok(Ttl::from_secs(secs)),
        }
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_secs(f, self.0.as_secs())
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TtlVisitor;
        impl serde::de::Visitor<'_> for TtlVisitor {
            type Value = Ttl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"45m\", \"12h\" or \"2d\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Ttl, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TtlVisitor)
    }
}

/// How long something is kept after it ended (`retention`, `--older-than`): zero is allowed
/// and means "from the moment it ended".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age(SignedDuration);

impl Age {
    pub const fn from_secs(secs: i64) -> Self {
        Age(SignedDuration::from_secs(secs))
    }

    pub fn as_duration(self) -> SignedDuration {
        self.0
    }

    /// Parses `text`, naming `what` ("retention", "--older-than") in errors.
    pub fn parse(text: &str, what: &str) -> Result<Age, String> {
        parse_secs(text, what).map(Age::from_secs)
    }
}

impl fmt::Display for Age {
    /// In days at most ("30d", "90d", "1d12h"): retention periods read better without weeks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs <= 0 {
            return f.write_str("0s");
        }
        let mut rest = secs;
        for (unit, unit_secs) in &UNITS[1..] {
            if rest >= *unit_secs {
                write!(f, "{}{unit}", rest / unit_secs)?;
                rest %= unit_secs;
            }
        }
        Ok(())
    }
}

impl Serialize for Age {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AgeVisitor;
        impl serde::de::Visitor<'_> for AgeVisitor {
            type Value = Age;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30d\", \"12w\" or \"0s\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Age, E> {
                Age::parse(text, "retention").map_err(E::custom)
            }
        }
        deserializer.deserialize_str(AgeVisitor)
    }
}

/// "1h 5m", "3d 2h", "40s": the time left until something, two most significant units, for
/// tables; "expired" once it has passed.
pub fn human_remaining(duration: SignedDuration) -> String {
    if duration.as_secs() <= 0 {
        return "expired".to_owned();
    }
    two_units(duration.as_secs())
}

/// "1h 5m", "40s", "0s": how long ago something happened (never negative, even with clock skew).
pub fn human_elapsed(duration: SignedDuration) -> String {
    if duration.as_secs() <= 0 {
        return "0s".to_owned();
    }
    two_units(duration.as_secs())
}

fn two_units(secs: i64) -> String {
    let parts: Vec<String> = UNITS[1..]
        .iter()
        .scan(secs, |rest, (unit, unit_secs)| {
            let amount = *rest / unit_secs;
            *rest %= unit_secs;
            Some((amount, unit))
        })
        .skip_while(|(amount, _)| *amount == 0)
        .take(2)
        .filter(|(amount, _)| *amount > 0)
        .map(|(amount, unit)| format!("{amount}{unit}"))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_compound_durations() {
        for (text, secs, printed) in [
            ("45m", 2700, "45m"),
            ("12h", 43200, "12h"),
            ("2d", 172_800, "2d"),
            ("1h30m", 5400, "1h30m"),
            ("90m", 5400, "1h30m"),
            ("1w", 604_800, "1w"),
        ] {
            let ttl: Ttl = text.parse().unwrap();
            assert_eq!(ttl.as_duration().as_secs(), secs, "{text}");
            assert_eq!(ttl.to_string(), printed);
        }
    }

    #[test]
    fn rejects_bad_durations_with_a_hint() {
        for bad in ["", "12", "h", "12x", "0m", "-5m", "99999999w"] {
            let err = bad.parse::<Ttl>().unwrap_err();
            assert!(err.contains("TTL"), "{bad}: {err}");
        }
    }

    #[test]
    fn remaining_time_is_short() {
        assert_eq!(human_remaining(SignedDuration::from_secs(3900)), "1h 5m");
        assert_eq!(human_remaining(SignedDuration::from_secs(40)), "40s");
        assert_eq!(
            human_remaining(SignedDuration::from_secs(2 * 86400 + 60)),
            "2d"
        );
        assert_eq!(human_remaining(SignedDuration::from_secs(0)), "expired");
        assert_eq!(human_elapsed(SignedDuration::from_secs(-5)), "0s");
        assert_eq!(human_elapsed(SignedDuration::from_secs(65)), "1m 5s");
    }

    #[test]
    fn errors_name_what_was_parsed() {
        let err = parse_std("5x", "cancel timeout").unwrap_err();
        assert!(err.starts_with("invalid cancel timeout \"5x\""), "{err}");
        assert_eq!(parse_std("0s", "cancel timeout").unwrap().as_secs(), 0);
        assert!("0m".parse::<Ttl>().is_err());
    }
}
