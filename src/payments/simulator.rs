//! The simulated payment provider: what one attempt of a payment method comes to.

use super::PaymentMethod;

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    /// A hard decline: retrying will not help.
    Declined(String),
    /// A temporary failure: worth retrying.
    Transient(String),
}

/// The outcome of attempt number `attempt` (1-based). `unit` is uniform in [0, 1) and
/// decides `pm_random` against `success_rate`.
pub fn attempt(
    method: PaymentMethod,
    attempt: u32,
    success_rate: f64,
    unit: f64,
) -> AttemptOutcome {
    match method {
        PaymentMethod::Success => AttemptOutcome::Succeeded,
        PaymentMethod::Decline => {
            AttemptOutcome::Declined("card declined by the issuer (simulated)".into())
        }
        PaymentMethod::Transient(n) if attempt <= u32::from(n) => AttemptOutcome::Transient(
            format!("processor timeout on attempt {attempt} (simulated)"),
        ),
        PaymentMethod::Transient(_) => AttemptOutcome::Succeeded,
        PaymentMethod::Unavailable => {
            AttemptOutcome::Transient("payment provider unavailable (simulated)".into())
        }
        PaymentMethod::Random if unit < success_rate => AttemptOutcome::Succeeded,
        PaymentMethod::Random => {
            AttemptOutcome::Transient("payment provider error (simulated)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_methods_behave_as_documented() {
        assert_eq!(
            attempt(PaymentMethod::Success, 1, 0.0, 0.99),
            AttemptOutcome::Succeeded
        );
        assert!(matches!(
            attempt(PaymentMethod::Decline, 1, 1.0, 0.0),
            AttemptOutcome::Declined(_)
        ));
        for n in 1..=9u8 {
            for a in 1..=u32::from(n) {
                assert!(matches!(
                    attempt(PaymentMethod::Transient(n), a, 1.0, 0.0),
                    AttemptOutcome::Transient(_)
                ));
            }
            assert_eq!(
                attempt(PaymentMethod::Transient(n), u32::from(n) + 1, 0.0, 0.99),
                AttemptOutcome::Succeeded
            );
        }
        for a in 1..=20 {
            assert!(matches!(
                attempt(PaymentMethod::Unavailable, a, 1.0, 0.0),
                AttemptOutcome::Transient(_)
            ));
        }
    }

    #[test]
    fn random_follows_the_success_rate() {
        assert_eq!(
            attempt(PaymentMethod::Random, 1, 0.8, 0.79),
            AttemptOutcome::Succeeded
        );
        assert!(matches!(
            attempt(PaymentMethod::Random, 1, 0.8, 0.8),
            AttemptOutcome::Transient(_)
        ));
        assert!(matches!(
            attempt(PaymentMethod::Random, 1, 0.0, 0.0),
            AttemptOutcome::Transient(_)
        ));
        assert_eq!(
            attempt(PaymentMethod::Random, 1, 1.0, 0.999),
            AttemptOutcome::Succeeded
        );
    }
}
