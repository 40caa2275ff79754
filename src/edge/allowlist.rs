//! Admin → Allowlist (`/admin/allowlist`): who may sign up through an OpenID provider, as htmx
//! fragments (list, add, remove). The rules are the Accounts actor's (`accounts::allowlist`);
//! `larder allow` manages the same list from the server's shell.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use larder_actors::accounts::{AccountsMsg, AllowEntry};
use serde::Deserialize;

use super::AppState;
use super::api::rfc3339;
use super::auth::AdminUser;
use super::error::WebError;
use super::pages::{Frame, preferences};

/// An entry as the list shows it.
pub struct AllowRow {
    pub pattern: String,
    pub added_at: String,
}

impl From<AllowEntry> for AllowRow {
    fn from(e: AllowEntry) -> Self {
        AllowRow {
            pattern: e.pattern,
            added_at: rfc3339(e.added_at),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_allowlist.html")]
struct AllowlistPage {
    frame: Frame,
    providers: Vec<String>,
    entries: Vec<AllowRow>,
    message: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/allowlist.html")]
struct Allowlist {
    entries: Vec<AllowRow>,
    message: Option<String>,
}

async fn entries(state: &AppState, message: Option<String>) -> Result<Allowlist, WebError> {
    let list = state.placement.accounts(AccountsMsg::ListAllowed).await?;
    Ok(Allowlist {
        entries: list.into_iter().map(AllowRow::from).collect(),
        message,
    })
}

/// `GET /admin/allowlist`.
pub async fn page(
    State(state): State<AppState>,
    AdminUser(session): AdminUser,
) -> Result<Response, WebError> {
    let prefs = preferences(&state, session.user.id).await?;
    Ok(AllowlistPage {
        frame: Frame::signed_in(&state, &session, &prefs, "allowlist"),
        providers: state.oidc.buttons().into_iter().map(|b| b.label).collect(),
        entries: entries(&state, None).await?.entries,
        message: None,
    }
    .into_response())
}

/// `GET /admin/allowlist/entries`: the list fragment.
pub async fn list(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Response, WebError> {
    Ok(entries(&state, None)
        .await
        .map_err(WebError::fragment)?
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct PatternForm {
    pattern: String,
}

fn unprocessable(message: String) -> WebError {
    WebError::new(StatusCode::UNPROCESSABLE_ENTITY, message).fragment()
}

/// `POST /admin/allowlist/entries` (form: `pattern`).
pub async fn add(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    form: Result<Form<PatternForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unprocessable(e.body_text()))?;
    let pattern = form.pattern;
    let added = state
        .placement
        .accounts(|r| AccountsMsg::Allow(pattern.clone(), r))
        .await
        .map_err(|e| WebError::from(e).fragment())?
        .map_err(|e| unprocessable(e.to_string()))?;
    let shown = pattern.trim().to_lowercase();
    let message = if added {
        format!("Added {shown}: matching addresses may now sign up.")
    } else {
        format!("{shown} was already on the allowlist.")
    };
    Ok(entries(&state, Some(message))
        .await
        .map_err(WebError::fragment)?
        .into_response())
}

/// `DELETE /admin/allowlist/entries?pattern=…`.
pub async fn remove(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    query: Result<Query<PatternForm>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| unprocessable(e.body_text()))?;
    let pattern = query.pattern;
    let removed = state
        .placement
        .accounts(|r| AccountsMsg::Disallow(pattern.clone(), r))
        .await
        .map_err(|e| WebError::from(e).fragment())?
        .map_err(|e| unprocessable(e.to_string()))?;
    let shown = pattern.trim().to_lowercase();
    let message = if removed {
        format!("Removed {shown}. People who already signed up keep their accounts.")
    } else {
        format!("{shown} was not on the allowlist.")
    };
    Ok(entries(&state, Some(message))
        .await
        .map_err(WebError::fragment)?
        .into_response())
}
