//! The one pagination type: `skip` / `take` / `orderBy` / `order` in, `Page` out; and the
//! `limit` of the logs that page by cursor (events, deliveries).

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::FieldErrors;

/// A column a list may be ordered by, named as clients spell it.
pub trait SortField: Sized + Copy + 'static {
    /// `(name, field)` for every accepted `orderBy` value.
    const ALLOWED: &'static [(&'static str, Self)];
    /// Used when `orderBy` is absent.
    const DEFAULT: Self;
}

/// The direction of a list (`order`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes a query parameter, read as text by `PageRequest::parse`
pub enum SortOrder {
    Asc,
    Desc,
}

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest<F> {
    pub skip: u64,
    pub take: u64,
    pub order_by: F,
    pub descending: bool,
}

/// The largest `take`.
pub const MAX_TAKE: u64 = 100;
/// `take` when absent.
pub const DEFAULT_TAKE: u64 = 10;
/// The largest `skip`; deeper pages are better served by filters.
pub const MAX_SKIP: u64 = 1_000_000;

impl<F> PageRequest<F> {
    /// The direction rows are ordered in.
    pub fn direction(&self) -> sea_orm::Order {
        if self.descending {
            sea_orm::Order::Desc
        } else {
            sea_orm::Order::Asc
        }
    }
}

impl<F: SortField> PageRequest<F> {
    /// Validates the raw parameters, adding a message per bad field to `errors`.
    /// Returns `None` when any of them was invalid.
    pub fn parse(
        skip: Option<&str>,
        take: Option<&str>,
        order_by: Option<&str>,
        order: Option<&str>,
        errors: &mut FieldErrors,
    ) -> Option<Self> {
        let mut fail = |field: &str, msg: String| {
            errors.entry(field.to_owned()).or_default().push(msg);
        };
        let skip = match skip.map(str::parse::<u64>) {
            None => Some(0),
            Some(Ok(n)) if n <= MAX_SKIP => Some(n),
            Some(_) => {
                fail(
                    "skip",
                    format!("must be a whole number from 0 to {MAX_SKIP}"),
                );
                None
            }
        };
        let take = match take.map(str::parse::<u64>) {
            None => Some(DEFAULT_TAKE),
            Some(Ok(n)) if (1..=MAX_TAKE).contains(&n) => Some(n),
            Some(_) => {
                fail(
                    "take",
                    format!("must be a whole number from 1 to {MAX_TAKE}"),
                );
                None
            }
        };
        let order_by = match order_by {
            None => Some(F::DEFAULT),
            Some(name) => match F::ALLOWED.iter().find(|(n, _)| *n == name) {
                Some((_, field)) => Some(*field),
                None => {
                    let names: Vec<&str> = F::ALLOWED.iter().map(|(n, _)| *n).collect();
                    fail("orderBy", format!("must be one of: {}", names.join(", ")));
                    None
                }
            },
        };
        let descending = match order {
            None | Some("desc") => Some(true),
            Some("asc") => Some(false),
            Some(_) => {
                fail("order", "must be asc or desc".into());
                None
            }
        };
        Some(Self {
            skip: skip?,
            take: take?,
            order_by: order_by?,
            descending: descending?,
        })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether a further page exists after this one.
    pub has_next_page: bool,
    /// How many items match, over all pages.
    pub total_count: u64,
}

impl<T> Page<T> {
    pub fn new<F>(items: Vec<T>, request: &PageRequest<F>, total_count: u64) -> Self {
        let has_next_page = request.skip + (items.len() as u64) < total_count;
        Self {
            items,
            has_next_page,
            total_count,
        }
    }
}

/// The default page of a log that pages by cursor (`?after=&limit=`).
pub const CURSOR_DEFAULT_LIMIT: u64 = 50;
/// The largest page of a log that pages by cursor.
pub const CURSOR_MAX_LIMIT: u64 = 100;

/// A cursor page's `limit` (1..=100, default 50); a bad one is recorded under `limit`.
pub fn cursor_limit(raw: Option<&str>, errors: &mut FieldErrors) -> u64 {
    match raw.map(str::parse::<u64>) {
        None => CURSOR_DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=CURSOR_MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            errors.insert(
                "limit".into(),
                vec![format!(
                    "must be a whole number from 1 to {CURSOR_MAX_LIMIT}"
                )],
            );
            CURSOR_DEFAULT_LIMIT
        }
    }
}

/// Query of a log listed newest first by cursor (webhook deliveries, stock movements).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewestFirstQuery {
    /// Only entries older than this one (an entry's `id`, or `nextCursor`).
    #[param(value_type = Option<uuid::Uuid>)]
    pub after: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// A page of a log read by cursor, before it takes its own type.
pub struct CursorRows<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// Cuts a page of a log read with `limit + 1` rows (one more than fits says more follow),
/// converts what fits, and names the cursor to go on from: the last item's, or `after`
/// when the page is empty.
pub fn cursor_rows<R, T>(
    mut rows: Vec<R>,
    limit: u64,
    after: Option<String>,
    convert: impl FnMut(R) -> crate::error::AppResult<T>,
    cursor: impl Fn(&T) -> String,
) -> crate::error::AppResult<CursorRows<T>> {
    let has_more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let items = rows
        .into_iter()
        .map(convert)
        .collect::<crate::error::AppResult<Vec<T>>>()?;
    let next_cursor = items.last().map(cursor).or(after);
    Ok(CursorRows {
        items,
        has_more,
        next_cursor,
    })
}

/// An optional UUID query parameter; a malformed one is recorded under `field`.
pub fn optional_uuid(
    raw: Option<&str>,
    field: &str,
    message: &str,
    errors: &mut FieldErrors,
) -> Option<uuid::Uuid> {
    match raw.map(uuid::Uuid::parse_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.insert(field.into(), vec![message.into()]);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Field {
        CreatedAt,
        Name,
    }
    impl SortField for Field {
        const ALLOWED: &'static [(&'static str, Self)] =
            &[("createdAt", Field::CreatedAt), ("name", Field::Name)];
        const DEFAULT: Self = Field::CreatedAt;
    }

    fn parse(
        skip: Option<&str>,
        take: Option<&str>,
        order_by: Option<&str>,
        order: Option<&str>,
    ) -> Result<PageRequest<Field>, FieldErrors> {
        let mut errors = FieldErrors::new();
        PageRequest::parse(skip, take, order_by, order, &mut errors).ok_or(errors)
    }

    #[test]
    fn applies_defaults() {
        let page = parse(None, None, None, None).unwrap();
        assert_eq!(
            page,
            PageRequest {
                skip: 0,
                take: 10,
                order_by: Field::CreatedAt,
                descending: true
            }
        );
    }

    #[test]
    fn accepts_bounds() {
        let page = parse(Some("5"), Some("100"), Some("name"), Some("asc")).unwrap();
        assert_eq!(
            (page.skip, page.take, page.order_by, page.descending),
            (5, 100, Field::Name, false)
        );
        assert_eq!(parse(None, Some("1"), None, None).unwrap().take, 1);
    }

    #[test]
    fn rejects_each_bad_field_by_name() {
        let errors = parse(Some("-1"), Some("0"), Some("price"), Some("up")).unwrap_err();
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(fields, ["order", "orderBy", "skip", "take"]);
        assert!(errors["orderBy"][0].contains("createdAt, name"));
        assert!(parse(None, Some("101"), None, None).is_err());
        assert!(
            parse(None, None, None, Some("ASC")).is_err(),
            "as documented: asc or desc"
        );
        assert!(parse(None, Some("ten"), None, None).is_err());
        assert!(parse(Some("1000001"), None, None, None).is_err());
    }

    #[test]
    fn page_knows_whether_more_follow() {
        let req = parse(Some("10"), Some("5"), None, None).unwrap();
        assert!(Page::new(vec![1, 2, 3, 4, 5], &req, 16).has_next_page);
        assert!(!Page::new(vec![1, 2, 3, 4, 5], &req, 15).has_next_page);
        assert!(!Page::new(Vec::<i32>::new(), &req, 3).has_next_page);
    }
}
