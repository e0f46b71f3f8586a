//! Real-time status over Socket.IO: namespaces `/orders` and `/payment`, event `status`.
//!
//! Only this module knows Socket.IO. Events come from the log, through this process's
//! relay (`events::relay`). A socket proves who it is at the handshake (`auth.token`, an
//! `Authorization: Bearer` header, or `?token=`) and joins its user's room; admins also
//! join the admins' room.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use axum::{Router, extract::Query, http::header};
use futures::future::BoxFuture;
use serde_json::Value;
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use uuid::Uuid;

use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{AuthUser, Authenticator, bearer, standing::Change},
    events::{self, Event, relay::Sink, routes::EventQuery},
};

/// The namespace of order events.
pub const ORDERS: &str = "/orders";
/// The namespace of payment events.
pub const PAYMENT: &str = "/payment";
/// The event name in both namespaces.
pub const STATUS: &str = "status";
const ADMINS: &str = "admins";
/// Packets that may wait to be written to one connection. A client that lets more pile up
/// is cut off (see [`cut_off`]) rather than silently missing events.
const BUFFER: usize = 1024;

/// Takes a socket that cannot keep up (its buffer is full) out of every room, so it is
/// sent nothing more, and disconnects it as soon as the disconnect packet fits: the client
/// sees the disconnect, reconnects and resumes after the last event it handled
/// (`auth.lastEventId`), instead of silently missing the events that did not fit.
fn cut_off<A: Adapter>(socket: SocketRef<A>) {
    socket.leave_all();
    metrics::counter!("socketio_slow_clients_total").increment(1);
    tracing::warn!(socket = %socket.id, ns = socket.ns(), "a Socket.IO client could not keep up; disconnecting it so that it resumes");
    tokio::spawn(async move {
        // Up to a minute; an engine.io ping timeout closes it anyway after that.
        for _ in 0..1200 {
            if !socket.connected() || socket.clone().disconnect().is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}

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
        // Each socket of the union of both rooms once (an admin who owns the order gets it
        // once); one that cannot take it is cut off, never skipped.
        let rooms = [user_room(owner), ADMINS.to_owned()];
        for socket in ns.to(rooms).sockets() {
            if socket.emit(STATUS, &event.data).is_err() {
                cut_off(socket);
            }
        }
    }
}

/// The Socket.IO server of this process: the layer to serve, and the sink its relay hands
/// events to.
pub struct Realtime {
    pub sink: Arc<dyn Sink>,
    layer: SocketIoLayer,
    io: SocketIo,
    auth: Arc<Authenticator>,
}

impl Realtime {
    /// Namespaces `/orders` and `/payment`, each behind the handshake's authentication. A
    /// socket that resumes reads the log (`db`) and this process's relay (`live`) itself.
    pub fn new(
        auth: Arc<Authenticator>,
        db: DatabaseConnection,
        live: broadcast::Sender<Arc<Event>>,
    ) -> Self {
        let (layer, io) = SocketIo::builder().max_buffer_size(BUFFER).build_layer();
        let resumer = Arc::new(Resumer {
            auth: auth.clone(),
            db,
            live,
        });
        for namespace in [ORDERS, PAYMENT] {
            let resumer = resumer.clone();
            let connected = move |socket: SocketRef| {
                let resumer = resumer.clone();
                async move { on_connect(socket, resumer).await }
            };
            io.ns(namespace, connected.with(authenticate(auth.clone())));
        }
        Self {
            sink: Arc::new(SocketIoSink { io: io.clone() }),
            layer,
            io,
            auth,
        }
    }

    /// Until `stop`: when an account's sessions end (or it is disabled, or its role
    /// changes), this process's sockets of it are looked at again; those whose session no
    /// longer stands, or whose role changed, are disconnected. A client that reconnects is
    /// authenticated afresh (and joins the rooms of its role now).
    pub fn guard_sessions(&self, stop: CancellationToken) -> impl Future<Output = ()> + use<> {
        let io = self.io.clone();
        let auth = self.auth.clone();
        let mut changes = auth.changes();
        async move {
            loop {
                let change = tokio::select! {
                    () = stop.cancelled() => return,
                    change = changes.recv() => match change {
                        Ok(change) => change,
                        Err(broadcast::error::RecvError::Lagged(_)) => Change::Any,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                for namespace in [ORDERS, PAYMENT] {
                    let Some(ns) = io.of(namespace) else { continue };
                    for socket in ns.local().sockets() {
                        let Some(user) = socket.extensions.get::<AuthUser>() else {
                            continue;
                        };
                        if matches!(change, Change::Account(id) if id != user.id) {
                            continue;
                        }
                        let stands = auth.recheck(&user).await;
                        if stands.is_none_or(|now| now.role != user.role) {
                            tracing::info!(socket = %socket.id, user_id = %user.id, "session ended or role changed; disconnecting the socket");
                            let _ = socket.disconnect();
                        }
                    }
                }
            }
        }
    }

    /// Serves Socket.IO (`/socket.io/`) in front of `router`.
    pub fn serve(self, router: Router) -> Router {
        router.layer(self.layer)
    }
}

/// Why a handshake was refused; clients see it as the `connect_error` message.
#[derive(Debug)]
enum Refused {
    Unauthorized,
    BadLastEventId,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unauthorized => "unauthorized",
            Self::BadLastEventId => "invalid lastEventId",
        })
    }
}

/// A socket that asked to resume after an event (`auth.lastEventId`).
#[derive(Clone, Debug)]
struct Resume(String);

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

/// The connect middleware: refuses a missing or bad token with `unauthorized`, and a
/// malformed `auth.lastEventId` with `invalid lastEventId`.
fn authenticate<A: Adapter>(
    auth: Arc<Authenticator>,
) -> impl FnOnce(SocketRef<A>, TryData<Value>) -> BoxFuture<'static, Result<(), Refused>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |socket: SocketRef<A>, TryData(auth_data): TryData<Value>| {
        let auth_data = auth_data.ok();
        let resume = auth_data
            .as_ref()
            .and_then(|a| a.get("lastEventId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let token = handshake_token(&socket, auth_data);
        Box::pin(async move {
            let user = match token {
                Some(token) => auth.authenticate(&token).await.ok(),
                None => None,
            };
            match (user, resume) {
                (None, _) => Err(Refused::Unauthorized),
                (Some(_), Some(last)) if Event::position(&last).is_none() => {
                    Err(Refused::BadLastEventId)
                }
                (Some(user), Some(last)) => {
                    // Fed by its own task (replay, then live), never through the rooms.
                    socket.extensions.insert(user);
                    socket.extensions.insert(Resume(last));
                    Ok(())
                }
                (Some(user), None) => {
                    // Joined here, before the client is told it is connected, so no event
                    // published right after the handshake can miss it.
                    socket.join(user_room(user.id));
                    if user.is_admin() {
                        socket.join(ADMINS);
                    }
                    socket.extensions.insert(user);
                    Ok(())
                }
            }
        })
    }
}

/// What a resuming socket reads: the log, and this process's relay.
struct Resumer {
    /// Looks at a new socket's session again once it is in its namespace.
    auth: Arc<Authenticator>,
    db: DatabaseConnection,
    live: broadcast::Sender<Arc<Event>>,
}

/// Sends a resuming socket the events of its namespace after `last` that its user may
/// see: the log first, then live ones, skipping any at or before the last one sent (the
/// subscription comes before the replay, so the hand-over has no gap), until it leaves.
async fn resume(socket: SocketRef, user: AuthUser, last: String, resumer: Arc<Resumer>) {
    let prefix = if socket.ns() == ORDERS {
        "order."
    } else {
        "payment."
    };
    let mut live = resumer.live.subscribe();
    let gone = CancellationToken::new();
    let leaving = gone.clone();
    socket.on_disconnect(async move || leaving.cancel());
    let mut sent = last;
    let replay = async |sent: &mut String| -> bool {
        loop {
            let query = EventQuery {
                after: Some(sent.clone()),
                kind: Some(format!("{prefix}*")),
                limit: Some("100".to_owned()),
                ..EventQuery::default()
            };
            let Ok(page) = events::page(&resumer.db, &user, query).await else {
                return true;
            };
            for event in &page.items {
                if socket.emit(STATUS, &event.data).is_err() {
                    cut_off(socket.clone());
                    return false;
                }
                *sent = event.id.clone();
            }
            if !page.has_more {
                return true;
            }
        }
    };
    if !replay(&mut sent).await {
        return;
    }
    loop {
        let received = tokio::select! {
            () = gone.cancelled() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(event) => {
                let mine = user.is_admin() || event.user_id == Some(user.id);
                if !mine || !event.kind.starts_with(prefix) || event.id <= sent {
                    continue;
                }
                if socket.emit(STATUS, &event.data).is_err() {
                    cut_off(socket);
                    return;
                }
                sent = event.id.clone();
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if !replay(&mut sent).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Once connected: counted while open; a resuming socket gets its own feed (the others
/// are in their rooms already).
async fn on_connect(socket: SocketRef, resumer: Arc<Resumer>) {
    tracing::debug!(sid = %socket.id, namespace = socket.ns(), "socket connected");
    metrics::gauge!("socketio_connections").increment(1.0);
    socket.on_disconnect(async || metrics::gauge!("socketio_connections").decrement(1.0));
    // A session that ended (or a role that changed) while the handshake ran was not heard
    // of here: the socket was not in its namespace yet.
    if let Some(user) = socket.extensions.get::<AuthUser>()
        && resumer
            .auth
            .recheck(&user)
            .await
            .is_none_or(|now| now.role != user.role)
    {
        let _ = socket.disconnect();
        return;
    }
    if let (Some(Resume(last)), Some(user)) = (
        socket.extensions.get::<Resume>(),
        socket.extensions.get::<AuthUser>(),
    ) {
        tokio::spawn(resume(socket, user, last, resumer));
    }
}
