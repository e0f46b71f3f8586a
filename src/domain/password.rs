//! The password policy: 8 to 128 characters with an upper-case letter, a lower-case
//! letter, a digit and a symbol, and no control characters.

/// A password that meets the policy. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The longest password accepted.
pub const MAX_CHARS: usize = 128;

impl Password {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut missing = Vec::new();
        if raw.chars().count() < 8 {
            missing.push("at least 8 characters");
        }
        if raw.chars().count() > MAX_CHARS {
            return Err(format!("must be at most {MAX_CHARS} characters long"));
        }
        super::check_text(raw, false)?;
        // ASCII classes, as the OpenAPI document's pattern states them.
        if !raw.chars().any(|c| c.is_ascii_uppercase()) {
            missing.push("an upper-case letter");
        }
        if !raw.chars().any(|c| c.is_ascii_lowercase()) {
            missing.push("a lower-case letter");
        }
        if !raw.chars().any(|c| c.is_ascii_digit()) {
            missing.push("a digit");
        }
        if !raw
            .chars()
            .any(|c| !c.is_ascii_alphanumeric() && !c.is_whitespace())
        {
            missing.push("a symbol");
        }
        if missing.is_empty() {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("must contain {}", missing.join(", ")))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_strong_password() {
        assert!(Password::parse("Str0ng!pass").is_ok());
    }

    #[test]
    fn names_what_is_missing() {
        let err = Password::parse("short").unwrap_err();
        for part in ["8 characters", "upper-case", "digit", "symbol"] {
            assert!(err.contains(part), "{err}");
        }
        assert!(
            Password::parse("alllowercase1!")
                .unwrap_err()
                .contains("upper-case")
        );
        assert!(
            Password::parse("ALLUPPERCASE1!")
                .unwrap_err()
                .contains("lower-case")
        );
        assert!(
            Password::parse("NoDigitsHere!")
                .unwrap_err()
                .contains("digit")
        );
        assert!(
            Password::parse("NoSymbols123")
                .unwrap_err()
                .contains("symbol")
        );
    }

    #[test]
    fn accepts_up_to_128_characters() {
        let longest = format!("Aa1!{}", "é".repeat(124));
        assert!(Password::parse(&longest).is_ok());
        let longer = format!("Aa1!{}", "x".repeat(125));
        assert!(Password::parse(&longer).unwrap_err().contains("128"));
    }

    #[test]
    fn debug_hides_the_value() {
        let p = Password::parse("Str0ng!pass").unwrap();
        assert!(!format!("{p:?}").contains("Str0ng"));
    }
}
