//! Optimistic concurrency for resources admins edit: a strong `ETag` from the row's
//! version, and `If-Match` (RFC 9110 §13.1.1) on the writes. A write whose `If-Match` names
//! no current tag answers 412 `precondition_failed` and changes nothing; without the
//! header the write goes through.

use std::convert::Infallible;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
};

use crate::error::AppError;

/// The strong entity tag of version `version` of a resource.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The `ETag` header of version `version`.
pub fn etag_header(version: i64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        headers.insert(header::ETAG, value);
    }
    headers
}

/// What an `If-Match` header asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current representation.
    Any,
    /// The versions its strong tags name. Weak tags never match (the comparison is
    /// strong) and tags this service never issued match nothing, so the list may be empty.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Reads every `If-Match` header of a request; `None` when there is none.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
        values.peek()?;
        let mut versions = Vec::new();
        for value in values {
            let Ok(text) = value.to_str() else { continue };
            for tag in text.split(',').map(str::trim) {
                if tag == "*" {
                    return Some(Self::Any);
                }
                let version = tag
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .and_then(|t| t.parse::<i64>().ok());
                versions.extend(version);
            }
        }
        Some(Self::Versions(versions))
    }

    /// Whether a resource at `version` satisfies it.
    pub fn matches(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }

    /// The versions a conditional update may match; `None` for any.
    pub fn versions(&self) -> Option<&[i64]> {
        match self {
            Self::Any => None,
            Self::Versions(versions) => Some(versions),
        }
    }
}

/// The 412 of a write whose `If-Match` no longer matches.
pub fn failed(what: &str) -> AppError {
    AppError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!(
            "The {what} changed since you read it (If-Match does not match its ETag); nothing was changed. Read it again and retry."
        ),
    )
}

/// Documents the `If-Match` request header of a conditional write (read by
/// [`Precondition`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documents a header, read by the `Precondition` extractor
pub struct IfMatchHeader {
    /// The `ETag` read before (or `*`): the write applies only if the resource is still at
    /// that version, else 412 `precondition_failed` and nothing changes.
    #[param(rename = "If-Match", example = "\"3\"")]
    if_match: Option<String>,
}

/// The request's `If-Match`, if it has one (an extractor that never refuses).
#[derive(Clone, Debug, Default)]
pub struct Precondition(pub Option<IfMatch>);

impl<S: Send + Sync> FromRequestParts<S> for Precondition {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(IfMatch::from_headers(&parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Option<IfMatch> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
        }
        IfMatch::from_headers(&headers)
    }

    #[test]
    fn strong_tags_match_their_version_only() {
        let one = parse(&[&etag(7)]).unwrap();
        assert!(one.matches(7));
        assert!(!one.matches(8));
        let list = parse(&["\"3\", \"9\"", "\"12\""]).unwrap();
        assert!(list.matches(3) && list.matches(9) && list.matches(12));
        assert!(!list.matches(4));
    }

    #[test]
    fn star_matches_anything_and_absence_is_none() {
        assert_eq!(parse(&["*"]), Some(IfMatch::Any));
        assert!(parse(&["*"]).unwrap().matches(1));
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn weak_foreign_and_garbled_tags_match_nothing() {
        for raw in [
            "W/\"7\"",
            "7",
            "\"seven\"",
            "\"7",
            "",
            "\"99999999999999999999\"",
        ] {
            let parsed = parse(&[raw]).unwrap();
            assert!(!parsed.matches(7), "{raw:?} matched");
            assert_eq!(parsed, IfMatch::Versions(vec![]), "{raw:?}");
        }
    }
}
