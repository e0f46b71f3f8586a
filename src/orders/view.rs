//! An order with its lines, their products' names and its payment: what `GET /orders/{id}`
//! shows, what `/orders` events carry, and what `/payment` events are built from.

use std::collections::HashMap;

use entity::{PaymentStatus, order, order_item, payment, product};
use sea_orm::{ConnectionTrait, EntityTrait, LoaderTrait, QueryOrder};
use uuid::Uuid;

use super::dto::{OrderItemResponse, OrderResponse, PaymentResponse, ProductRef};
use crate::{
    domain::Money,
    error::{AppError, AppResult},
    lifecycle::Moved,
    payments::PaymentEvent,
};

/// An order as it stands, with everything its views need.
#[derive(Clone, Debug)]
pub struct OrderView {
    pub order: order::Model,
    pub payment: payment::Model,
    lines: Vec<(order_item::Model, String)>,
}

impl OrderView {
    /// Assembles a view from rows at hand; `names` maps product ids to names.
    pub fn new(
        order: order::Model,
        items: Vec<order_item::Model>,
        payment: payment::Model,
        names: &HashMap<Uuid, String>,
    ) -> Self {
        let lines = items
            .into_iter()
            .map(|item| {
                let name = names.get(&item.product_id).cloned().unwrap_or_default();
                (item, name)
            })
            .collect();
        Self {
            order,
            payment,
            lines,
        }
    }

    /// Loads the lines, products and payments of `orders` through their relations (three
    /// queries, whatever the number of orders), keeping their order.
    pub async fn load_many<C: ConnectionTrait>(
        db: &C,
        orders: Vec<order::Model>,
    ) -> AppResult<Vec<Self>> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let items = orders
            .load_many(
                order_item::Entity::find().order_by_asc(order_item::Column::Id),
                db,
            )
            .await?;
        let payments = orders.load_one(payment::Entity, db).await?;
        let flat: Vec<order_item::Model> = items.iter().flatten().cloned().collect();
        let names: HashMap<Uuid, String> = flat
            .load_one(product::Entity, db)
            .await?
            .into_iter()
            .flatten()
            .map(|p| (p.id, p.name))
            .collect();
        orders
            .into_iter()
            .zip(items)
            .zip(payments)
            .map(|((order, items), payment)| {
                let payment = payment.ok_or_else(|| {
                    AppError::Internal(anyhow::anyhow!("order {} has no payment row", order.id))
                })?;
                Ok(Self::new(order, items, payment, &names))
            })
            .collect()
    }

    /// Loads one order's view; `None` when there is no such order.
    pub async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<Option<Self>> {
        let order = order::Entity::find_by_id(id).one(db).await?;
        Ok(Self::load_many(db, order.into_iter().collect())
            .await?
            .pop())
    }

    /// The same order after a transition moved it.
    pub fn moved(&self, moved: Moved) -> Self {
        Self {
            order: moved.order,
            payment: moved.payment,
            lines: self.lines.clone(),
        }
    }

    /// The same order with its payment as a transition left it (the order unchanged).
    pub fn with_payment(&self, payment: payment::Model) -> Self {
        Self {
            payment,
            ..self.clone()
        }
    }

    /// The order as clients see it.
    pub fn response(&self) -> OrderResponse {
        let (order, payment) = (&self.order, &self.payment);
        OrderResponse {
            id: order.id,
            user_id: order.user_id,
            status: order.status,
            total: Money::from_cents(order.total_cents),
            refunded: Money::from_cents(order.refunded_cents),
            currency: order.currency.clone(),
            payment_method: order.payment_method,
            created_at: order.created_at,
            updated_at: order.updated_at,
            order_items: self
                .lines
                .iter()
                .map(|(item, name)| {
                    let price = Money::from_cents(item.unit_price_cents);
                    OrderItemResponse {
                        id: item.id,
                        product_id: item.product_id,
                        quantity: item.quantity,
                        price,
                        subtotal: price.times(i64::from(item.quantity)).unwrap_or(price),
                        product: ProductRef {
                            id: item.product_id,
                            name: name.clone(),
                        },
                    }
                })
                .collect(),
            payment: PaymentResponse {
                status: payment.status,
                attempts: payment.attempts,
                max_attempts: payment.max_attempts,
                last_error: payment.last_error.clone(),
                next_attempt_at: payment.next_attempt_at,
                action_expires_at: payment.action_expires_at,
                updated_at: payment.updated_at,
            },
        }
    }

    /// The `/payment` event telling where the payment now stands.
    pub fn payment_event(&self) -> PaymentEvent {
        let (order, payment) = (&self.order, &self.payment);
        let status = payment.status;
        PaymentEvent {
            order_id: order.id,
            user_id: order.user_id,
            amount: Money::from_cents(order.total_cents),
            currency: order.currency.clone(),
            payment_method: order.payment_method,
            status,
            attempt: payment.attempts,
            max_attempts: payment.max_attempts,
            next_attempt_at: payment.next_attempt_at,
            action_expires_at: payment.action_expires_at,
            error: match status {
                PaymentStatus::Retrying | PaymentStatus::Failed => payment.last_error.clone(),
                _ => None,
            },
        }
    }
}
