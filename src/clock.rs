//! The one clock. Timestamps are truncated to microseconds, the precision PostgreSQL
//! keeps, so a value read back equals the value written on every backend.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// The current time, at microsecond precision.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}
