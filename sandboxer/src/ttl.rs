//! Time-to-live values: parsing "45m", "12h", "2d", "1h30m" and printing them back.

use std::fmt;
use std::str::FromStr;

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration written as a sequence of `<number><unit>` with units s, m, h, d, w.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(SignedDuration);

const UNITS: [(char, i64); 5] = [
    ('w', 7 * 24 * 3600),
    ('d', 24 * 3600),
    ('h', 3600),
    ('m', 60),
    ('s', 1),
];

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
        let hint =
            "write a duration such as \"45m\", \"12h\", \"2d\" or \"1h30m\" (units: s, m, h, d, w)";
        if text.trim().is_empty() {
            return Err(format!("empty TTL; {hint}"));
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        for ch in text.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let Some(&(_, unit_secs)) = UNITS.iter().find(|(unit, _)| *unit == ch) else {
                return Err(format!("invalid TTL {text:?}: unexpected `{ch}`; {hint}"));
            };
            if digits.is_empty() {
                return Err(format!(
                    "invalid TTL {text:?}: `{ch}` has no number before it; {hint}"
                ));
            }
            let amount: i64 = digits
                .parse()
                .map_err(|_| format!("invalid TTL {text:?}: number too large"))?;
            total = amount
                .checked_mul(unit_secs)
                .and_then(|secs| total.checked_add(secs))
                .filter(|secs| *secs <= 10 * 365 * 24 * 3600)
                .ok_or_else(|| format!("invalid TTL {text:?}: longer than 10 years"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(format!(
                "invalid TTL {text:?}: `{digits}` has no unit; {hint}"
            ));
        }
        if total == 0 {
            return Err(format!("invalid TTL {text:?}: must be longer than zero"));
        }
        Ok(Ttl::from_secs(total))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        for (unit, unit_secs) in UNITS {
            if rest >= unit_secs {
                write!(f, "{}{unit}", rest / unit_secs)?;
                rest %= unit_secs;
            }
        }
        Ok(())
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

/// "1h 5m", "3d 2h", "40s": a remaining duration, two most significant units, for tables.
pub fn human_remaining(duration: SignedDuration) -> String {
    let secs = duration.as_secs();
    if secs <= 0 {
        return "expired".to_owned();
    }
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
    }
}
