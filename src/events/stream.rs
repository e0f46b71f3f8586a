//! `GET /events/stream`: server-sent events of what the caller may see. Each stream
//! subscribes to this process's relay first, then replays the log after `Last-Event-ID`,
//! then passes live events on, skipping any at or before the last one sent: the relay and
//! the replay read the log in the same commit-safe order, so the hand-over has no gap and
//! no duplicate. A stream that falls behind the relay catches up from the log.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::response::sse::{self, KeepAlive, Sse};
use tokio::sync::{broadcast, mpsc};

use super::{Event, page, routes::EventQuery};
use crate::{
    auth::{AuthUser, standing::Change},
    error::{AppError, AppResult, FieldErrors},
    state::AppState,
};

/// How often a comment line keeps the connection open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Hands every event the relay reads to the open streams of this process.
pub struct LiveSink {
    sender: broadcast::Sender<Arc<Event>>,
}

impl LiveSink {
    pub fn new(sender: broadcast::Sender<Arc<Event>>) -> Self {
        Self { sender }
    }
}

#[async_trait::async_trait]
impl super::relay::Sink for LiveSink {
    async fn deliver(&self, event: &Event) {
        // No stream open: nobody to tell.
        let _ = self.sender.send(Arc::new(event.clone()));
    }
}

/// Counts an open stream while it lives.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::gauge!("sse_connections").increment(1.0);
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("sse_connections").decrement(1.0);
    }
}

fn visible(user: &AuthUser, event: &Event) -> bool {
    user.is_admin() || event.user_id == Some(user.id)
}

fn to_sse(event: &Event) -> sse::Event {
    sse::Event::default()
        .id(event.id.clone())
        .event(event.kind.clone())
        .json_data(event)
        .unwrap_or_else(|_| sse::Event::default().comment("unserializable event skipped"))
}

/// Opens the stream of `user`, replaying after `last` first.
pub fn open(
    state: &AppState,
    user: AuthUser,
    last: Option<String>,
) -> AppResult<Sse<impl futures::Stream<Item = Result<sse::Event, Infallible>> + use<>>> {
    if let Some(last) = &last
        && Event::position(last).is_none()
    {
        let errors = FieldErrors::from([(
            "Last-Event-ID".to_owned(),
            vec!["must be an event id".to_owned()],
        )]);
        return Err(AppError::validation(errors));
    }
    // Subscribed before the replay reads, so nothing committed meanwhile is missed.
    let mut live = state.live_events.subscribe();
    let mut changes = state.auth.changes();
    let auth = state.auth.clone();
    let mut user = user;
    let db = state.db.clone();
    let (out, received) = mpsc::channel::<sse::Event>(64);
    tokio::spawn(async move {
        let _open = Open::new();
        // Subscribed to changes above: a session that ended before is caught here, one that
        // ends later by the loop below.
        match auth.recheck(&user).await {
            Some(now) => user = now,
            None => return,
        }
        let mut sent = last;
        // Replays the log after `sent`; `false` once the client is gone.
        let catch_up = async |sent: &mut Option<String>, user: &AuthUser| -> bool {
            let Some(cursor) = sent.clone() else {
                return true;
            };
            let mut cursor = cursor;
            loop {
                let query = EventQuery {
                    after: Some(cursor.clone()),
                    limit: Some("100".to_owned()),
                    ..EventQuery::default()
                };
                let Ok(page) = page(&db, user, query).await else {
                    return true;
                };
                for event in &page.items {
                    if out.send(to_sse(event)).await.is_err() {
                        return false;
                    }
                    cursor = event.id.clone();
                }
                *sent = Some(cursor.clone());
                if !page.has_more {
                    return true;
                }
            }
        };
        if !catch_up(&mut sent, &user).await {
            return;
        }
        loop {
            // A client that hung up ends the stream at once, not at the next event.
            let received = tokio::select! {
                () = out.closed() => return,
                received = live.recv() => received,
                change = changes.recv() => {
                    let ours = match change {
                        Ok(Change::Account(id)) => id == user.id,
                        Ok(Change::Any) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                        // Cannot happen while `auth` is held; end rather than spin.
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if ours {
                        // The session ended (the stream with it), or the role changed.
                        match auth.recheck(&user).await {
                            Some(now) => user = now,
                            None => return,
                        }
                    }
                    continue;
                }
            };
            match received {
                Ok(event) => {
                    if !visible(&user, &event)
                        || sent.as_deref().is_some_and(|s| event.id.as_str() <= s)
                    {
                        continue;
                    }
                    if out.send(to_sse(&event)).await.is_err() {
                        return;
                    }
                    sent = Some(event.id.clone());
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if !catch_up(&mut sent, &user).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok(event), received))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("keep-alive")))
}
