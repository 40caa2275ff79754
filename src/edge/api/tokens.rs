//! `/api/tokens`: personal API tokens, for scripts (`Authorization: Bearer lpat_…`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::WithRejection;
use larder_actors::accounts::{AccountsError, AccountsMsg, ApiToken, CreateApiToken};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::rfc3339;
use crate::edge::AppState;
use crate::edge::auth::ApiOwner;
use crate::edge::error::ApiError;

/// A personal API token (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: Uuid,
    pub name: String,
    /// The secret's first characters, to tell tokens apart.
    pub hint: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; absent when the token does not expire.
    pub expires_at: Option<String>,
}

impl From<ApiToken> for TokenOut {
    fn from(t: ApiToken) -> Self {
        TokenOut {
            id: t.id,
            name: t.name,
            hint: t.hint,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
        }
    }
}

/// A token just created: `secret` is shown this once and cannot be retrieved again.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenOut {
    pub secret: String,
    pub token: TokenOut,
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenIn {
    /// Unique among your tokens, 1 to 80 characters.
    pub name: String,
    /// 1 to 3650 days; absent or null: the token does not expire.
    pub expires_in_days: Option<u32>,
}

pub(crate) fn accounts_error(e: AccountsError) -> ApiError {
    let status = match e {
        AccountsError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// Your personal API tokens, newest first.
#[utoipa::path(get, path = "/api/tokens", tag = "account",
    responses((status = 200, body = Vec<TokenOut>), (status = 401, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    ApiOwner(session): ApiOwner,
) -> Result<Json<Vec<TokenOut>>, ApiError> {
    let user = session.user.id;
    let list = state
        .placement
        .accounts(|r| AccountsMsg::ListApiTokens(user, r))
        .await?;
    Ok(Json(list.into_iter().map(TokenOut::from).collect()))
}

/// Creates a personal API token. The answer is the only time its secret is shown.
#[utoipa::path(post, path = "/api/tokens", tag = "account", request_body = NewTokenIn,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, body = NewTokenOut),
        (status = 422, description = "Invalid name or lifetime", body = ApiError, content_type = "application/problem+json"),
    ))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    ApiOwner(session): ApiOwner,
    body: Result<Json<NewTokenIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let created = create(&state, session.user.id, body.name, body.expires_in_days)
        .await
        .map_err(accounts_error)?;
    let out = NewTokenOut {
        secret: created.secret,
        token: created.token.into(),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Creates a token (the API's and the Settings page's one path).
pub(crate) async fn create(
    state: &AppState,
    user: larder_actors::UserId,
    name: String,
    expires_in_days: Option<u32>,
) -> Result<larder_actors::accounts::NewApiToken, AccountsError> {
    let req = CreateApiToken {
        user,
        name,
        expires_in_days,
    };
    state
        .placement
        .accounts(|r| AccountsMsg::CreateApiToken(req.clone(), r))
        .await
        .map_err(|e| AccountsError::Storage(e.to_string()))?
}

/// Revokes a token: it stops working at once.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "account",
    params(("id" = Uuid, Path, description = "Token id")),
    security(("session" = [], "csrf" = [])),
    responses((status = 204, description = "Revoked"), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    ApiOwner(session): ApiOwner,
    WithRejection(Path(id), _): WithRejection<Path<Uuid>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let user = session.user.id;
    let revoked = state
        .placement
        .accounts(|r| AccountsMsg::RevokeApiToken(user, id, r))
        .await?
        .map_err(accounts_error)?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("you have no token with id {id}"),
        ))
    }
}
