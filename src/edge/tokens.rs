//! Settings → API tokens, as htmx fragments: the list (name, hint, created, expiry), create
//! (the secret is shown once, in the answer, and never again), and revoke.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use larder_actors::UserId;
use larder_actors::accounts::{AccountsMsg, ApiToken};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::api::rfc3339;
use super::auth::PageUser;
use super::error::WebError;

/// A token as the list shows it.
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub hint: String,
    pub created_at: String,
    pub expires_at: String,
}

impl From<ApiToken> for TokenRow {
    fn from(t: ApiToken) -> Self {
        TokenRow {
            id: t.id,
            name: t.name,
            hint: t.hint,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339).unwrap_or_default(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/tokens.html")]
struct Tokens {
    tokens: Vec<TokenRow>,
    /// A token just created: its secret, shown this once.
    created: Option<(String, String)>,
    message: Option<String>,
}

async fn rows(state: &AppState, user: UserId) -> Result<Vec<TokenRow>, WebError> {
    let list = state
        .placement
        .accounts(|r| AccountsMsg::ListApiTokens(user, r))
        .await?;
    Ok(list.into_iter().map(TokenRow::from).collect())
}

/// `GET /settings/tokens`.
pub async fn list(
    State(state): State<AppState>,
    PageUser(session): PageUser,
) -> Result<Response, WebError> {
    Ok(Tokens {
        tokens: rows(&state, session.user.id).await?,
        created: None,
        message: None,
    }
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewToken {
    name: String,
    /// Days, or empty for "never".
    #[serde(default)]
    expires_in_days: String,
}

/// `POST /settings/tokens`: creates one and shows its secret once.
pub async fn create(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    form: Result<Form<NewToken>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) =
        form.map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.body_text()).fragment())?;
    let days = match form.expires_in_days.trim() {
        "" | "never" => None,
        d => Some(d.parse::<u32>().map_err(|_| {
            WebError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "choose how long the token lasts",
            )
            .fragment()
        })?),
    };
    let user = session.user.id;
    let created = super::api::tokens::create(&state, user, form.name, days)
        .await
        .map_err(|e| WebError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).fragment())?;
    Ok(Tokens {
        tokens: rows(&state, user).await?,
        created: Some((created.token.name, created.secret)),
        message: None,
    }
    .into_response())
}

/// `DELETE /settings/tokens/{id}`.
pub async fn revoke(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    let revoked = state
        .placement
        .accounts(|r| AccountsMsg::RevokeApiToken(user, id, r))
        .await?
        .map_err(|e| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).fragment())?;
    Ok(Tokens {
        tokens: rows(&state, user).await?,
        created: None,
        message: Some(if revoked {
            "Revoked: the token no longer works.".into()
        } else {
            "That token was already gone.".into()
        }),
    }
    .into_response())
}
