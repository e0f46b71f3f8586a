//! A whole number as JSON clients send it: `7` and `7.0` are the same integer.

use serde::{Deserialize, Deserializer, de};

/// An integer field of a request body. Accepts any JSON number with an integral value
/// (`7`, `7.0`, `7e0`); anything else is a type error (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WholeNumber, E> {
                i64::try_from(v)
                    .map(WholeNumber)
                    .map_err(|_| E::custom("the number is too large"))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<WholeNumber, E> {
                // ±2^63 bound the integers an i64 holds; every f64 below that converts exactly.
                const LIMIT: f64 = 9_223_372_036_854_775_808.0;
                if v.fract() == 0.0 && v > -LIMIT && v < LIMIT {
                    Ok(WholeNumber(v as i64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::WholeNumber;

    fn parse(json: &str) -> Result<i64, String> {
        serde_json::from_str::<WholeNumber>(json)
            .map(|n| n.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integral_numbers_in_any_notation_are_the_same_integer() {
        assert_eq!(parse("7"), Ok(7));
        assert_eq!(parse("7.0"), Ok(7));
        assert_eq!(parse("7e0"), Ok(7));
        assert_eq!(parse("-3"), Ok(-3));
        assert_eq!(parse("1e3"), Ok(1000));
    }

    #[test]
    fn fractions_strings_and_huge_values_are_refused() {
        for bad in [
            "7.5",
            "\"7\"",
            "true",
            "null",
            "1e300",
            "18446744073709551615",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
