//! `GET /ws`: one WebSocket per tab, carrying the user's catalog events.
//!
//! The socket's end is a [`Tab`] actor in the user's tab group, so the user's `Session`
//! reaches it wherever the Session lives. On connect the server says hello (the tab's id and
//! the catalog's last commit), then sends every commit after the client's `?since=` from the
//! log (none without `since`), then live commits as they become durable — in order, each once, with no gap: a gap in
//! the live stream is filled from the log. A tab whose socket falls behind is closed (code
//! 1013) and the browser reconnects and catches up. Every 20 s the server pings and checks
//! that the Session still knows the tab (rejoining after a Session restart).
//!
//! Frames, JSON text: `{"type":"hello","tab":"<uuid>","seq":N}` and
//! `{"type":"commit","commit":<CommitOut>}`. The server reads nothing but pongs and closes.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use larder_actors::catalog::{CatalogMsg, Commit, Seq, SinceQuery};
use larder_actors::session::{SessionMsg, Tab, TabInfo};
use larder_actors::{UserId, now_millis};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::api::catalog::CommitOut;
use super::auth::ApiUser;
use super::error::ApiError;

const KEEPALIVE: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
pub struct Params {
    /// The last commit the tab has seen; absent: start from now (no catch-up).
    since: Option<Seq>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame {
    Hello { tab: Uuid, seq: Seq },
    Commit { commit: Box<CommitOut> },
}

pub async fn upgrade(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    headers: HeaderMap,
    Query(params): Query<Params>,
    ws: WebSocketUpgrade,
) -> Response {
    // A page on another site must not ride the user's cookie (cross-site WebSocket hijacking):
    // browsers always send Origin, and it must be ours. Non-browser clients may omit it.
    if let Some(origin) = headers.get(header::ORIGIN)
        && origin.as_bytes() != state.base_url.as_bytes()
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "WebSocket connections are accepted only from Larder's own pages",
        )
        .into_response();
    }
    let user = session.user.id;
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = serve(state, user, params.since, socket).await {
            tracing::debug!(%user, error = %e, "tab socket ended");
        }
    })
}

struct Conn {
    state: AppState,
    user: UserId,
    info: TabInfo,
    /// The last commit sent.
    sent: Seq,
}

async fn serve(
    state: AppState,
    user: UserId,
    since: Option<Seq>,
    mut socket: WebSocket,
) -> anyhow::Result<()> {
    let (tab, mut events) = Tab::open(user)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the tab: {e}"))?;
    let mut conn = Conn {
        info: TabInfo {
            tab: Uuid::now_v7(),
            opened_at: now_millis(),
            node: state.base_url.to_string(),
        },
        state,
        user,
        sent: since.unwrap_or(0),
    };
    let from_now = since.is_none();
    metrics::gauge!("larder_tabs_open").increment(1.0);
    let result = conn.run(&mut socket, &mut events, from_now).await;
    metrics::gauge!("larder_tabs_open").decrement(1.0);
    tab.stop(None);
    let tab_id = conn.info.tab;
    if let Ok(handles) = conn.state.placement.user(user).await {
        let _ = handles.session.cast(SessionMsg::Leave(tab_id));
    }
    result
}

impl Conn {
    async fn run(
        &mut self,
        socket: &mut WebSocket,
        events: &mut tokio::sync::mpsc::Receiver<Commit>,
        from_now: bool,
    ) -> anyhow::Result<()> {
        self.join().await?;
        // Only the number: saying hello must not copy the whole catalog.
        let seq = self
            .state
            .placement
            .catalog(self.user, CatalogMsg::Head)
            .await?;
        send(
            socket,
            &Frame::Hello {
                tab: self.info.tab,
                seq,
            },
        )
        .await?;
        if from_now {
            self.sent = seq;
        } else if self.sent > seq {
            // The client saw commits this catalog never had (another server's data dir?):
            // start from ours.
            self.sent = 0;
        }
        self.catch_up(socket).await?;
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(commit) => self.deliver(socket, commit).await?,
                    None => {
                        let _ = socket.send(Message::Close(Some(CloseFrame {
                            code: 1013,
                            reason: Utf8Bytes::from_static("fell behind: reconnect and catch up"),
                        }))).await;
                        return Ok(());
                    }
                },
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => {}
                },
                _ = keepalive.tick() => {
                    socket.send(Message::Ping(Default::default())).await?;
                    let tab = self.info.tab;
                    let known = self.state.placement.session(self.user, |r| SessionMsg::Knows(tab, r)).await?;
                    if !known {
                        self.join().await?;
                        self.catch_up(socket).await?;
                    }
                }
            }
        }
    }

    async fn join(&self) -> anyhow::Result<()> {
        let info = self.info.clone();
        self.state
            .placement
            .session(self.user, |r| SessionMsg::Join(info.clone(), r))
            .await?;
        Ok(())
    }

    /// Sends a live commit, filling any gap before it from the log.
    async fn deliver(&mut self, socket: &mut WebSocket, commit: Commit) -> anyhow::Result<()> {
        if commit.seq <= self.sent {
            return Ok(());
        }
        if commit.seq > self.sent + 1 {
            self.catch_up(socket).await?;
            if commit.seq <= self.sent {
                return Ok(());
            }
        }
        self.sent = commit.seq;
        send(
            socket,
            &Frame::Commit {
                commit: Box::new(commit.into()),
            },
        )
        .await
    }

    /// Sends every commit after the last one sent, from the log.
    async fn catch_up(&mut self, socket: &mut WebSocket) -> anyhow::Result<()> {
        loop {
            let q = SinceQuery {
                seq: self.sent,
                limit: larder_actors::catalog::MAX_PAGE,
            };
            let page = self
                .state
                .placement
                .catalog(self.user, |r| CatalogMsg::Since(q.clone(), r))
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            for commit in page {
                self.sent = commit.seq;
                send(
                    socket,
                    &Frame::Commit {
                        commit: Box::new(commit.into()),
                    },
                )
                .await?;
            }
        }
    }
}

async fn send(socket: &mut WebSocket, frame: &Frame) -> anyhow::Result<()> {
    let text = serde_json::to_string(frame)?;
    socket.send(Message::Text(text.into())).await?;
    Ok(())
}
