//! Domain values that are parsed once at the edge, so the rest of the code never
//! re-validates: an [`Email`] is always trimmed, lower-case and well formed, a
//! [`Password`] always meets the policy, [`Money`] is always exact.

mod email;
mod money;
mod password;

pub use email::Email;
pub use money::{AmountInput, Money};
pub use password::Password;
