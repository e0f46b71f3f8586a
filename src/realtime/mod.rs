//! Real-time status over Socket.IO: namespaces `/orders` and `/payment`, event `status`.
//!
//! Only this module knows Socket.IO. Events come from the log, through this process's
//! relay (`events::relay`). A socket proves who it is at the handshake (`auth.token`, an
//! `Authorization: Bearer` header, or `?token=`) and joins its user's room; admins also
//! join the admins' room.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use axum::{Router, extract::Query, http::header};
use serde_json::Value;
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use uuid::Uuid;

use crate::{
    auth::{AuthUser, JwtKeys, bearer},
    events::{Event, relay::Sink},
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

/// Hands the log's order and payment events to this process's sockets: `order.*` as
/// `/orders` `status`, `payment.*` as `/payment` `status`, to the owner's room and the
/// admins' room. Every instance runs its own relay, so each emit reaches only the sockets
/// connected here, and each client hears each of its events once.
struct SocketIoSink {
    io: SocketIo,
}

#[async_trait]
impl Sink for SocketIoSink {
    async fn deliver(&self, event: &Event) {
        let namespace = match event.kind.split_once('.') {
            Some(("order", _)) => ORDERS,
            Some(("payment", _)) => PAYMENT,
            _ => return,
        };
        let (Some(owner), Some(ns)) = (event.user_id, self.io.of(namespace)) else {
            return;
        };
        // One emit to the union of both rooms: an admin who owns the order gets it once.
        let rooms = [user_room(owner), ADMINS.to_owned()];
        if let Err(err) = ns.to(rooms).emit(STATUS, &event.data).await {
            tracing::warn!(namespace, error = %err, "could not emit a status event");
        }
    }
}

/// The Socket.IO server of this process: the layer to serve, and the sink its relay hands
/// events to.
pub struct Realtime {
    pub sink: Arc<dyn Sink>,
    layer: SocketIoLayer,
}

impl Realtime {
    /// Namespaces `/orders` and `/payment`, each behind the handshake's authentication.
    pub fn new(jwt: Arc<JwtKeys>) -> Self {
        let (layer, io) = SocketIo::new_layer();
        for namespace in [ORDERS, PAYMENT] {
            io.ns(namespace, on_connect.with(authenticate(jwt.clone())));
        }
        Self {
            sink: Arc::new(SocketIoSink { io }),
            layer,
        }
    }

    /// Serves Socket.IO (`/socket.io/`) in front of `router`.
    pub fn serve(self, router: Router) -> Router {
        router.layer(self.layer)
    }
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

/// Once connected (the middleware put the socket in its rooms): counted while open.
async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, namespace = socket.ns(), "socket connected");
    metrics::gauge!("socketio_connections").increment(1.0);
    socket.on_disconnect(async || metrics::gauge!("socketio_connections").decrement(1.0));
}
