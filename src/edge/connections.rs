//! Settings → Connected apps, as htmx fragments: the OAuth grants a person gave (which app,
//! since when, last used), and revoking one, which ends its refresh and access tokens at once.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use larder_actors::UserId;
use larder_actors::oauth::{Grant, OAuthMsg};
use uuid::Uuid;

use super::AppState;
use super::api::rfc3339;
use super::auth::PageUser;
use super::error::WebError;

/// A grant as the list shows it.
pub struct ConnectionRow {
    pub id: Uuid,
    pub name: String,
    pub client_id: String,
    /// RFC 3339 (for `<time datetime>`) and as people read it.
    pub created_at: (String, String),
    pub last_used_at: (String, String),
}

impl From<Grant> for ConnectionRow {
    fn from(g: Grant) -> Self {
        ConnectionRow {
            id: g.id,
            name: g.client_name.unwrap_or_else(|| "Unnamed app".to_owned()),
            client_id: g.client_id,
            created_at: (rfc3339(g.created_at), readable(g.created_at)),
            last_used_at: (rfc3339(g.last_used_at), readable(g.last_used_at)),
        }
    }
}

/// `2026-12-04 22:23 UTC`.
fn readable(ms: i64) -> String {
    let full = rfc3339(ms);
    match (full.get(..10), full.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => full,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/connections.html")]
struct Connections {
    connections: Vec<ConnectionRow>,
    message: Option<String>,
}

async fn rows(state: &AppState, user: UserId) -> Result<Vec<ConnectionRow>, WebError> {
    let list = state
        .placement
        .oauth(|r| OAuthMsg::ListGrants(user, r))
        .await?;
    Ok(list.into_iter().map(ConnectionRow::from).collect())
}

/// `GET /settings/connections`.
pub async fn list(
    State(state): State<AppState>,
    PageUser(session): PageUser,
) -> Result<Response, WebError> {
    Ok(Connections {
        connections: rows(&state, session.user.id).await?,
        message: None,
    }
    .into_response())
}

/// `DELETE /settings/connections/{id}`.
pub async fn revoke(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    let revoked = state
        .placement
        .oauth(|r| OAuthMsg::RevokeGrant(user, id, r))
        .await?
        .map_err(|e| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).fragment())?;
    if revoked {
        tracing::info!(user = %session.user.name, grant = %id, "revoked a connected app");
    }
    Ok(Connections {
        connections: rows(&state, user).await?,
        message: Some(if revoked {
            "Disconnected: the app can no longer use your data.".into()
        } else {
            "That app was already disconnected.".into()
        }),
    }
    .into_response())
}
