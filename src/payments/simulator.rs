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
    /// The customer must act (3-D Secure and the like) before the payment can go on.
    RequiresAction,
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
        PaymentMethod::Unavailable => {
            AttemptOutcome::Transient("payment provider unavailable (simulated)".into())
        }
        PaymentMethod::Random if unit < success_rate => AttemptOutcome::Succeeded,
        PaymentMethod::Random => {
            AttemptOutcome::Transient("payment provider error (simulated)".into())
        }
        // Only the first attempt asks: a later one runs once the customer confirmed.
        PaymentMethod::RequiresAction if attempt <= 1 => AttemptOutcome::RequiresAction,
        PaymentMethod::RequiresAction => AttemptOutcome::Succeeded,
        transient => match transient.transient_failures() {
            Some(n) if attempt <= n => AttemptOutcome::Transient(format!(
                "processor timeout on attempt {attempt} (simulated)"
            )),
            _ => AttemptOutcome::Succeeded,
        },
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

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
        let transient = PaymentMethod::iter().filter_map(|m| Some((m, m.transient_failures()?)));
        assert_eq!(transient.clone().count(), 9);
        for (method, n) in transient {
            for a in 1..=n {
                assert!(matches!(
                    attempt(method, a, 1.0, 0.0),
                    AttemptOutcome::Transient(_)
                ));
            }
            assert_eq!(attempt(method, n + 1, 0.0, 0.99), AttemptOutcome::Succeeded);
        }
        assert_eq!(
            attempt(PaymentMethod::RequiresAction, 1, 1.0, 0.0),
            AttemptOutcome::RequiresAction
        );
        assert_eq!(
            attempt(PaymentMethod::RequiresAction, 2, 0.0, 0.99),
            AttemptOutcome::Succeeded
        );
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
