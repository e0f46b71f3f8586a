//! The retry policy shared by every queue backend: exponential backoff with full jitter,
//! capped, for a bounded number of attempts.

use std::time::Duration;

/// When to try again, and when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, after attempt `attempt` (1-based) failed:
    /// `unit × min(max_delay, base × 2^(attempt−1))`, where `unit` is uniform in [0, 1)
    /// (full jitter, so retries of many payments spread out instead of stampeding).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(62);
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(exponent.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether a transient failure of attempt `attempt` (1-based) gets another try.
    pub fn retries_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_attempts: 5,
        }
    }

    #[test]
    fn ceiling_doubles_per_attempt_up_to_the_cap() {
        let p = policy();
        let almost_one = 0.999;
        let ms = |attempt| p.delay(attempt, almost_one).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(50)],
            [99, 199, 399, 799, 999, 999]
        );
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        let p = policy();
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(
            p.delay(3, 7.0),
            Duration::from_millis(400),
            "unit is clamped"
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = policy();
        assert!(p.retries_after(1));
        assert!(p.retries_after(4));
        assert!(!p.retries_after(5));
        assert!(!p.retries_after(6));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = RetryPolicy {
            base: Duration::from_secs(3600),
            max_delay: Duration::from_secs(u64::MAX / 4),
            max_attempts: 3,
        };
        assert!(p.delay(u32::MAX, 0.5) > Duration::ZERO);
    }
}
