//! Real-time status over Socket.IO: namespaces `/orders` and `/payment`, event `status`.
//!
//! Only this module knows Socket.IO. Services publish through the [`EventBus`] trait after
//! their change has committed. A socket proves who it is at the handshake (`auth.token`,
//! an `Authorization: Bearer` header, or `?token=`) and joins its user's room; admins also
//! join the admins' room. With Redis, the socketioxide-redis adapter carries every emit to
//! the sockets of all instances, including emits from `shop worker` processes.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{Router, extract::Query, http::header};
use fred::{
    clients::SubscriberClient,
    interfaces::{EventInterface, PubsubInterface},
    prelude::Config as RedisConfig,
    types::RespVersion,
};
use serde::Serialize;
use serde_json::Value;
use socketioxide::{
    SocketIo,
    adapter::{Adapter, LocalAdapter},
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use socketioxide_redis::{
    FredAdapter, RedisAdapterConfig, RedisAdapterCtr, drivers::fred::FredDriver,
};
use uuid::Uuid;

use crate::{
    auth::{AuthUser, JwtKeys, bearer},
    orders::dto::OrderResponse,
    payments::PaymentEvent,
};

/// The namespace of order events.
pub const ORDERS: &str = "/orders";
/// The namespace of payment events.
pub const PAYMENT: &str = "/payment";
/// The event name in both namespaces.
pub const STATUS: &str = "status";
const ADMINS: &str = "admins";

fn user_room(user: Uuid) -> String {
    format!("user:{user}")
}

/// Where services publish status changes (after they commit).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// `/orders` `status`: the order as `GET /orders/{id}` shows it.
    async fn order_status(&self, order: &OrderResponse);
    /// `/payment` `status`: one attempt or outcome.
    async fn payment_status(&self, event: &PaymentEvent);
}

/// Emits to the owner's room and the admins' room of a namespace.
struct SocketIoEvents<A: Adapter> {
    io: SocketIo<A>,
}

impl<A: Adapter> SocketIoEvents<A> {
    async fn emit<T: Serialize + Sync>(&self, namespace: &str, owner: Uuid, payload: &T) {
        let Some(ns) = self.io.of(namespace) else {
            return;
        };
        // One emit to the union of both rooms: an admin who owns the order gets it once.
        let rooms = [user_room(owner), ADMINS.to_owned()];
        if let Err(err) = ns.to(rooms).emit(STATUS, payload).await {
            tracing::warn!(namespace, error = %err, "could not publish a status event");
        }
    }
}

#[async_trait]
impl<A: Adapter> EventBus for SocketIoEvents<A> {
    async fn order_status(&self, order: &OrderResponse) {
        self.emit(ORDERS, order.user_id, order).await;
    }

    async fn payment_status(&self, event: &PaymentEvent) {
        self.emit(PAYMENT, event.user_id, event).await;
    }
}

/// The Socket.IO server of this process: the layer to serve (HTTP processes) and the
/// event bus to publish through (every process).
pub struct Realtime {
    pub events: Arc<dyn EventBus>,
    layer: RealtimeLayer,
}

enum RealtimeLayer {
    Local(SocketIoLayer<LocalAdapter>),
    Redis(SocketIoLayer<FredAdapter<socketioxide::adapter::Emitter>>),
}

impl Realtime {
    /// In-process: events reach the sockets of this process only.
    pub fn local(jwt: Arc<JwtKeys>) -> Self {
        let (layer, io) = SocketIo::new_layer();
        for namespace in [ORDERS, PAYMENT] {
            io.ns(namespace, on_connect.with(authenticate(jwt.clone())));
        }
        Self {
            events: Arc::new(SocketIoEvents { io }),
            layer: RealtimeLayer::Local(layer),
        }
    }

    /// Across instances through Redis pub/sub (RESP3), channels under `prefix`.
    pub async fn redis(jwt: Arc<JwtKeys>, url: &str, prefix: &str) -> anyhow::Result<Self> {
        let mut config = RedisConfig::from_url(url)?;
        // The adapter publishes on its subscribed connection, which only RESP3 allows.
        config.version = RespVersion::RESP3;
        let client = fred::prelude::Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(2);
                p.broadcast_channel_capacity = 1024;
            })
            .set_policy(fred::prelude::ReconnectPolicy::new_exponential(
                0, 100, 5_000, 2,
            ))
            .build_subscriber_client()?;
        resubscribe_on_reconnect(&client);
        let adapter: RedisAdapterCtr<FredDriver> = RedisAdapterCtr::new_with_fred_config(
            client,
            RedisAdapterConfig::new().with_prefix(format!("{prefix}:socket.io")),
        )
        .await?;
        let (layer, io) = SocketIo::builder()
            .with_adapter::<FredAdapter<_>>(adapter)
            .build_layer();
        for namespace in [ORDERS, PAYMENT] {
            io.ns(namespace, on_connect.with(authenticate(jwt.clone())))
                .await
                .map_err(|err| anyhow::anyhow!("Socket.IO namespace {namespace}: {err}"))?;
        }
        Ok(Self {
            events: Arc::new(SocketIoEvents { io }),
            layer: RealtimeLayer::Redis(layer),
        })
    }

    /// Serves Socket.IO (`/socket.io/`) in front of `router`.
    pub fn serve(self, router: Router) -> Router {
        match self.layer {
            RealtimeLayer::Local(layer) => router.layer(layer),
            RealtimeLayer::Redis(layer) => router.layer(layer),
        }
    }
}

/// The adapter subscribes once; after Redis comes back the subscriptions must be renewed
/// or this instance would silently stop hearing the others.
fn resubscribe_on_reconnect(client: &SubscriberClient) {
    let handle = client.clone();
    // The listener task lives as long as the client; its join handle is not needed.
    drop(client.on_reconnect(move |_server| {
        let handle = handle.clone();
        async move {
            for channel in handle.tracked_shard_channels() {
                if let Err(err) = handle.ssubscribe(channel).await {
                    tracing::warn!(error = %err, "could not renew a Socket.IO subscription");
                }
            }
            Ok::<(), fred::error::Error>(())
        }
    }));
}

/// Why a handshake was refused; clients see it as the `connect_error` message.
#[derive(Debug)]
struct Unauthorized;

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unauthorized")
    }
}

/// The handshake's token: `auth.token`, else an `Authorization: Bearer` header, else
/// `?token=`. A bare token or a `Bearer <token>` value is accepted in `auth.token` and the
/// query; the header follows HTTP's rule (the `auth::bearer` parser for both).
fn handshake_token<A: Adapter>(socket: &SocketRef<A>, auth: Option<Value>) -> Option<String> {
    let token = |raw: &str| bearer(raw).unwrap_or(raw.trim()).to_owned();
    if let Some(raw) = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
    {
        return Some(token(raw));
    }
    let parts = socket.req_parts();
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        return value.to_str().ok().and_then(bearer).map(str::to_owned);
    }
    Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .ok()
        .and_then(|Query(query)| query.get("token").map(|raw| token(raw)))
}

/// The connect middleware: refuses a missing or bad token with `unauthorized`.
fn authenticate<A: Adapter>(
    jwt: Arc<JwtKeys>,
) -> impl FnOnce(SocketRef<A>, TryData<Value>) -> std::future::Ready<Result<(), Unauthorized>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |socket: SocketRef<A>, TryData(auth): TryData<Value>| {
        let user = handshake_token(&socket, auth.ok())
            .and_then(|token| jwt.verify(&token).ok())
            .map(AuthUser::from);
        std::future::ready(match user {
            Some(user) => {
                // Joined here, before the client is told it is connected, so no event
                // published right after the handshake can miss it.
                socket.join(user_room(user.id));
                if user.is_admin() {
                    socket.join(ADMINS);
                }
                socket.extensions.insert(user);
                Ok(())
            }
            None => Err(Unauthorized),
        })
    }
}

/// Nothing to do once connected: the middleware put the socket in its rooms.
async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, namespace = socket.ns(), "socket connected");
}
