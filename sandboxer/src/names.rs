//! Names sandboxer puts into file names, make variables and remote command lines (VM names,
//! projects, build hosts, labels): one rule, so such a value is safe wherever it goes.

/// Letters, digits, `.`, `_`, `-`, at most 64, not starting with `-` or `.`: safe in a file
/// name, a make variable and a remote shell's command line, and never taken for an option.
pub fn check_name(value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with(['-', '.'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err("is not a valid name: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `-` or `.`".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["demo", "web-1.2_x", "A"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a/b",
            "x;y",
            "$(id)",
            "`id`",
            "a\nb",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
