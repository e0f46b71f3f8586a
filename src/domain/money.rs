//! Exact money: integer minor units (cents), shown as a decimal string with two places.
//!
//! Input is a JSON number or string with at most two decimals; a number is read from its
//! decimal text, never through floating-point arithmetic.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount in minor units of the store currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// The largest price a product may have: 99,999,999.99.
    pub const MAX_PRICE: Money = Money(9_999_999_999);

    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// `self × quantity`, or `None` on overflow.
    pub fn times(self, quantity: i64) -> Option<Self> {
        self.0.checked_mul(quantity).map(Self)
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// Parses `12`, `12.5`, `12.50`, `-3.1`; rejects more than two decimals, exponents,
    /// signs other than a leading `-`, and anything out of range.
    pub fn parse(raw: &str) -> Result<Self, String> {
        const MSG: &str = "must be a decimal amount with at most two decimals, such as 12.50";
        let raw = raw.trim();
        let (negative, digits) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (digits.contains('.') && frac.is_empty())
        {
            return Err(MSG.into());
        }
        if frac.len() > 2 {
            return Err("must have at most two decimals".into());
        }
        let whole: i64 = whole.parse().map_err(|_| "is too large".to_string())?;
        let frac_cents: i64 = format!("{frac:0<2}").parse().map_err(|_| MSG.to_string())?;
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac_cents))
            .ok_or_else(|| "is too large".to_string())?;
        Ok(Self(if negative { -cents } else { cents }))
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads the canonical form written by `Serialize` (a decimal string).
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Money::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An amount as the client sent it, a JSON number or a string, kept as its decimal text
/// so that [`Money::parse`] can validate it exactly (and answer with a field error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmountInput(pub String);

impl<'de> Deserialize<'de> for AmountInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The raw JSON text, so a number is never rounded through f64 before it is checked.
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let text = raw.get().trim();
        if text.starts_with('"') {
            serde_json::from_str::<String>(text)
                .map(Self)
                .map_err(serde::de::Error::custom)
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(serde::de::Error::custom(
                "expected a number or a decimal string",
            ))
        }
    }
}

/// The OpenAPI schema of an amount field: a decimal string (`"12.50"`) or a JSON number,
/// with at most two decimals, from 0.01 to the largest amount of `whole_digits` digits.
pub fn amount_schema(whole_digits: u8, example: &str) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let max = 10f64.powi(i32::from(whole_digits)) - 0.01;
    let more = whole_digits.saturating_sub(1);
    Schema::OneOf(
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        r"^([1-9][0-9]{{0,{more}}}(\.[0-9]{{1,2}})?|0\.(0[1-9]|[1-9][0-9]?))$"
                    )))
                    .examples([serde_json::json!(example)]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.01))
                    .maximum(Some(max))
                    .multiple_of(Some(0.01)),
            )
            .description(Some(format!(
                "At least 0.01 and at most {max:.2}, with at most two decimals"
            )))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_two_places() {
        assert_eq!(Money::from_cents(1250).to_string(), "12.50");
        assert_eq!(Money::from_cents(5).to_string(), "0.05");
        assert_eq!(Money::from_cents(0).to_string(), "0.00");
        assert_eq!(Money::from_cents(-199).to_string(), "-1.99");
        assert_eq!(Money::MAX_PRICE.to_string(), "99999999.99");
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Money::parse("12").unwrap().cents(), 1200);
        assert_eq!(Money::parse("12.5").unwrap().cents(), 1250);
        assert_eq!(Money::parse("12.05").unwrap().cents(), 1205);
        assert_eq!(Money::parse("0.1").unwrap().cents(), 10);
        assert_eq!(Money::parse("-3.10").unwrap().cents(), -310);
    }

    #[test]
    fn rejects_inexact_or_malformed_amounts() {
        for bad in [
            "",
            "abc",
            "1.234",
            "1e3",
            "1.",
            ".5",
            "+1",
            "1,00",
            "--1",
            "NaN",
            "99999999999999999999",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn from_json(json: &str) -> Result<Money, String> {
        let input: AmountInput = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Money::parse(&input.0)
    }

    #[test]
    fn reads_json_numbers_and_strings_without_floats() {
        assert_eq!(from_json("19.99").unwrap().cents(), 1999);
        assert_eq!(from_json("0.3").unwrap().cents(), 30);
        assert_eq!(from_json("\"7.05\"").unwrap().cents(), 705);
        assert_eq!(from_json("42").unwrap().cents(), 4200);
        assert!(from_json("1.005").is_err());
        assert!(from_json("true").is_err());
        assert!(
            from_json("12345678.999999999999").is_err(),
            "not rounded through f64"
        );
        assert!(from_json("1e2").is_err());
        assert_eq!(
            serde_json::to_string(&Money::from_cents(1250)).unwrap(),
            "\"12.50\""
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(
            Money::from_cents(250).times(4),
            Some(Money::from_cents(1000))
        );
        assert_eq!(Money::from_cents(i64::MAX).times(2), None);
        assert_eq!(
            Money::from_cents(i64::MAX).checked_add(Money::from_cents(1)),
            None
        );
    }
}
