//! Sizes as people write them (`500M`, `1.5GiB`, `10GB`) and as tables print them (`1.2 GiB`).

/// Binary multiples, as `ls -h`, `du -h` and `df -h` count.
const BINARY: [(&str, u64); 5] = [
    ("", 1),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
];

/// Parses `<number>[unit]`: no unit or `B` is bytes; `K`, `M`, `G`, `T` and `KiB` ... `TiB`
/// are powers of 1024; `KB` ... `TB` powers of 1000. Case-insensitive; a fraction is allowed
/// (`1.5G`). `what` names the value in errors.
pub fn parse(text: &str, what: &str) -> Result<u64, String> {
    let hint = "write a size such as \"500M\", \"1.5G\" or \"2TiB\" (K, M, G, T: powers of 1024; KB, MB, GB, TB: powers of 1000)";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!("invalid {what} {text:?}: no number; {hint}"));
    }
    let amount: f64 = number
        .parse()
        .map_err(|_| format!("invalid {what} {text:?}: `{number}` is not a number; {hint}"))?;
    let upper = unit.to_ascii_uppercase();
    let multiplier = match upper.as_str() {
        "" | "B" => 1,
        _ => {
            let (prefix, rest) = upper.split_at(1);
            let Some(power) = BINARY.iter().position(|(name, _)| *name == prefix) else {
                return Err(format!(
                    "invalid {what} {text:?}: unknown unit `{unit}`; {hint}"
                ));
            };
            match rest {
                "" | "IB" => BINARY[power].1,
                "B" => 1000u64.pow(u32::try_from(power).unwrap_or(0)),
                _ => {
                    return Err(format!(
                        "invalid {what} {text:?}: unknown unit `{unit}`; {hint}"
                    ));
                }
            }
        }
    };
    let bytes = amount * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("invalid {what} {text:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

/// `512 B`, `1.0 KiB`, `3.4 MiB`, `1.2 GiB`: one decimal from KiB up.
pub fn human(bytes: u64) -> String {
    let Some((name, unit)) = BINARY
        .iter()
        .rev()
        .find(|(_, unit)| bytes >= *unit && *unit > 1)
    else {
        return format!("{bytes} B");
    };
    format!("{:.1} {name}iB", bytes as f64 / *unit as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_both_systems() {
        for (text, bytes) in [
            ("0", 0),
            ("123", 123),
            ("123B", 123),
            ("1K", 1024),
            ("1k", 1024),
            ("1KiB", 1024),
            ("1KB", 1000),
            ("1.5G", 3 << 29),
            ("2TiB", 2 << 40),
            ("10GB", 10_000_000_000),
            ("500 M", 500 << 20),
        ] {
            assert_eq!(parse(text, "--max-total"), Ok(bytes), "{text}");
        }
        for bad in ["", "G", "1.2.3G", "5X", "5GX", "-5G", "1e30T"] {
            let err = parse(bad, "--max-total").unwrap_err();
            assert!(err.starts_with("invalid --max-total"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_print_short() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1_234_567_890), "1.1 GiB");
        assert_eq!(human(3 << 40), "3.0 TiB");
    }
}
