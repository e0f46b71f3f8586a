//! A Socket.IO test client (rust_socketio) that forwards what it hears to a channel.

use std::time::Duration;

use futures::FutureExt;
use rust_socketio::{
    Event, Payload, TransportType,
    asynchronous::{Client, ClientBuilder},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How a client presents its token at the handshake.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// `auth: {token}`, as browsers do.
    Payload(&'a str),
    /// `Authorization: Bearer <token>`.
    Header(&'a str),
    /// `?token=<token>`.
    Query(&'a str),
    /// `auth: {token, lastEventId}`: resume after an event.
    Resume(&'a str, &'a str),
    None,
}

#[derive(Debug)]
pub enum Heard {
    Connected,
    Closed,
    Refused(String),
    Status(Value),
}

pub struct Listener {
    client: Client,
    heard: mpsc::UnboundedReceiver<Heard>,
}

impl Listener {
    /// Connects to `namespace` and waits for the server's verdict: `Ok` once connected,
    /// `Err(message)` when refused.
    pub async fn connect(port: u16, namespace: &str, auth: Auth<'_>) -> Result<Listener, String> {
        let (tx, heard) = mpsc::unbounded_channel();
        let url = match auth {
            Auth::Query(token) => format!("http://127.0.0.1:{port}/?token={token}"),
            _ => format!("http://127.0.0.1:{port}"),
        };
        let mut builder = ClientBuilder::new(url)
            .namespace(namespace)
            .transport_type(TransportType::Websocket)
            .reconnect(false);
        match auth {
            Auth::Payload(token) => builder = builder.auth(json!({ "token": token })),
            Auth::Resume(token, last) => {
                builder = builder.auth(json!({ "token": token, "lastEventId": last }))
            }
            Auth::Header(token) => {
                builder = builder.opening_header("Authorization", format!("Bearer {token}"))
            }
            Auth::Query(_) | Auth::None => {}
        }
        let (on_connect, on_error, on_close, on_status) = (tx.clone(), tx.clone(), tx.clone(), tx);
        let client = builder
            .on(Event::Connect, move |_: Payload, _: Client| {
                let tx = on_connect.clone();
                async move {
                    let _ = tx.send(Heard::Connected);
                }
                .boxed()
            })
            .on(Event::Close, move |_: Payload, _: Client| {
                let tx = on_close.clone();
                async move {
                    let _ = tx.send(Heard::Closed);
                }
                .boxed()
            })
            .on(Event::Error, move |payload: Payload, _: Client| {
                let tx = on_error.clone();
                async move {
                    if let Payload::Text(values) = payload {
                        let text = values.first().and_then(Value::as_str).unwrap_or_default();
                        let message = text
                            .strip_prefix("Received an ConnectError frame: ")
                            .and_then(|json| serde_json::from_str::<Value>(json).ok())
                            .and_then(|v| v["message"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| text.to_owned());
                        let _ = tx.send(Heard::Refused(message));
                    }
                }
                .boxed()
            })
            .on("status", move |payload: Payload, _: Client| {
                let tx = on_status.clone();
                async move {
                    if let Payload::Text(mut values) = payload
                        && !values.is_empty()
                    {
                        let _ = tx.send(Heard::Status(values.remove(0)));
                    }
                }
                .boxed()
            })
            .connect()
            .await
            .map_err(|err| format!("handshake failed: {err}"))?;
        let mut listener = Listener { client, heard };
        match tokio::time::timeout(Duration::from_secs(10), listener.heard.recv()).await {
            Ok(Some(Heard::Connected)) => Ok(listener),
            Ok(Some(Heard::Refused(message))) => {
                listener.close().await;
                Err(message)
            }
            other => {
                listener.close().await;
                Err(format!("no verdict: {other:?}"))
            }
        }
    }

    /// The next `status` event, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.heard.recv()).await {
                Ok(Some(Heard::Status(value))) => return Some(value),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Whether the server closes the connection within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.heard.recv()).await {
                Ok(Some(Heard::Closed)) | Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Collects `status` events until one satisfies `last` (panics after 30 s).
    pub async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = self
                .next(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("no more events; heard {seen:#?}"));
            let done = last(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}
