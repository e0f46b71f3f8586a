//! Domain values that are parsed once at the edge, so the rest of the code never
//! re-validates: an [`Email`] is always trimmed, lower-case and well formed, a
//! [`Password`] always meets the policy, [`Money`] is always exact, a [`WholeNumber`]
//! reads `7` and `7.0` alike.

mod email;
mod money;
mod number;
mod password;

pub use email::Email;
pub use money::{AmountInput, Money, amount_schema};
pub use number::WholeNumber;
pub use password::Password;

/// The lowercase hex form of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses text no client should send: NUL and other control characters (line breaks and
/// tabs are allowed where `multiline`). PostgreSQL cannot even store NUL.
pub fn check_text(text: &str, multiline: bool) -> Result<(), String> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        Err("must not contain control characters".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_text;

    #[test]
    fn control_characters_are_refused() {
        assert!(check_text("plain text", false).is_ok());
        assert!(check_text("a\u{0}b", false).is_err());
        assert!(check_text("a\u{0}b", true).is_err());
        assert!(check_text("line\nbreak", false).is_err());
        assert!(check_text("line\nbreak\ttab", true).is_ok());
        assert!(check_text("bell\u{7}", true).is_err());
    }
}
