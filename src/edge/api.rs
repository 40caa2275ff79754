//! The JSON API under `/api/`, for scripts, the island and (later) MCP. Every route here is
//! described in the OpenAPI 3.1 document at `/api/openapi.json`, generated from these handlers
//! with utoipa; wire types are defined here (not borrowed from actor messages) so the public
//! contract changes only on purpose.
//!
//! Authentication: a personal API token (`Authorization: Bearer lpat_…`), or the browser
//! session cookie with `X-CSRF-Token` on state-changing requests.

pub(crate) mod catalog;
mod extensions;
pub(crate) mod storage;
mod table_data;
pub(crate) mod tokens;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use axum_extra::extract::WithRejection;
use larder_actors::library::{LibraryError, LibraryMsg, Preferences, SaveQuery, SavedQuery, Theme};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::{ApiUser, AuthVia, CSRF_HEADER, SESSION_COOKIE};
use super::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Larder API",
        description = "Your personal data warehouse, scriptable. Authenticate with a personal \
                       API token (`Authorization: Bearer lpat_...`, made in Settings), or with \
                       the browser session cookie plus the page's CSRF token in `X-CSRF-Token` on \
                       every state-changing request. Errors are RFC 9457 problem documents."
    ),
    modifiers(&SecuritySchemes),
    security(("session" = []), ("bearer" = [])),
    tags(
        (name = "account", description = "Who you are"),
        (name = "saved-queries", description = "SQL you kept"),
        (name = "preferences", description = "How the query page behaves for you"),
        (name = "storage", description = "Your storage backends and S3 proxy credentials"),
        (name = "duckdb", description = "What the browser's DuckDB can load"),
        (name = "catalog", description = "Your tables, their snapshots and the commit log"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(CSRF_HEADER))),
        );
    }
}

/// The `/api` routes, plus `/api/openapi.json` describing them.
pub fn router() -> Router<AppState> {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(me))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(list_saved_queries, create_saved_query))
        .routes(routes!(
            get_saved_query,
            update_saved_query,
            delete_saved_query
        ))
        .routes(routes!(get_preferences, set_preferences))
        .routes(routes!(storage::list_backends, storage::create_backend))
        .routes(routes!(
            storage::get_backend,
            storage::update_backend,
            storage::delete_backend
        ))
        .routes(routes!(storage::test_backend))
        .routes(routes!(storage::mint_proxy_credentials))
        .routes(routes!(extensions::duckdb_extensions))
        .routes(routes!(catalog::get_catalog))
        .routes(routes!(catalog::commit, catalog::commits_since))
        .routes(routes!(catalog::get_table))
        .routes(routes!(catalog::history))
        .routes(routes!(catalog::schema))
        .routes(routes!(catalog::snapshot))
        .routes(routes!(table_data::table_data))
        .split_for_parts();
    let doc = Arc::new(doc);
    router.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
struct Me {
    id: String,
    name: String,
    /// May open the admin pages.
    admin: bool,
    /// How the request authenticated: `session`, `api_token` or `oauth`.
    auth: &'static str,
    /// The OAuth client acting for the user, when `auth` is `oauth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

/// Who the session or bearer token belongs to (the simplest protected route).
#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, body = Me), (status = 401, body = ApiError, content_type = "application/problem+json")))]
async fn me(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    via: Option<axum::Extension<AuthVia>>,
) -> Json<Me> {
    let (auth, client_id) = match via.map(|v| v.0) {
        Some(AuthVia::ApiToken) => ("api_token", None),
        Some(AuthVia::OAuth { client_id }) => ("oauth", Some(client_id)),
        Some(AuthVia::Session) | None => ("session", None),
    };
    Json(Me {
        id: session.user.id.to_string(),
        admin: state.is_admin(&session.user.name),
        name: session.user.name,
        auth,
        client_id,
    })
}

/// A saved query.
#[derive(Debug, Serialize, ToSchema)]
struct SavedQueryOut {
    id: Uuid,
    name: String,
    sql: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
}

impl From<SavedQuery> for SavedQueryOut {
    fn from(q: SavedQuery) -> Self {
        SavedQueryOut {
            id: q.id,
            name: q.name,
            sql: q.sql,
            created_at: rfc3339(q.created_at),
            updated_at: rfc3339(q.updated_at),
        }
    }
}

/// A query to save. Names are unique per user (ignoring case).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSavedQuery {
    /// Optional client-chosen id: repeating a create with the same id is safe (an upsert).
    id: Option<Uuid>,
    name: String,
    sql: String,
}

/// New name and SQL for an existing saved query.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SavedQueryUpdate {
    name: String,
    sql: String,
}

fn library_error(e: LibraryError) -> ApiError {
    let status = match e {
        LibraryError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        LibraryError::NameTaken(_) => StatusCode::CONFLICT,
        LibraryError::NotFound => StatusCode::NOT_FOUND,
        LibraryError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// Every saved query, most recently updated first.
#[utoipa::path(get, path = "/api/saved-queries", tag = "saved-queries",
    responses((status = 200, body = Vec<SavedQueryOut>), (status = 401, body = ApiError, content_type = "application/problem+json")))]
async fn list_saved_queries(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
) -> Result<Json<Vec<SavedQueryOut>>, ApiError> {
    let list = state
        .placement
        .library(session.user.id, LibraryMsg::List)
        .await?;
    Ok(Json(list.into_iter().map(SavedQueryOut::from).collect()))
}

/// Saves a query. Answers once the query is durable.
#[utoipa::path(post, path = "/api/saved-queries", tag = "saved-queries", request_body = NewSavedQuery,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, body = SavedQueryOut),
        (status = 409, description = "The name is taken", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or SQL", body = ApiError, content_type = "application/problem+json"),
    ))]
async fn create_saved_query(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    body: Result<Json<NewSavedQuery>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let request = SaveQuery {
        id: Some(body.id.unwrap_or_else(Uuid::now_v7)),
        name: body.name,
        sql: body.sql,
    };
    let saved = save(&state, &session, request).await?;
    Ok((StatusCode::CREATED, Json(SavedQueryOut::from(saved))).into_response())
}

async fn save(
    state: &AppState,
    session: &larder_actors::accounts::Session,
    request: SaveQuery,
) -> Result<SavedQuery, ApiError> {
    state
        .placement
        .library(session.user.id, |r| LibraryMsg::Save(request.clone(), r))
        .await?
        .map_err(library_error)
}

async fn existing(
    state: &AppState,
    session: &larder_actors::accounts::Session,
    id: Uuid,
) -> Result<SavedQuery, ApiError> {
    state
        .placement
        .library(session.user.id, |r| LibraryMsg::Get(id, r))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no saved query with id {id}"),
            )
        })
}

/// One saved query.
#[utoipa::path(get, path = "/api/saved-queries/{id}", tag = "saved-queries",
    params(("id" = Uuid, Path, description = "Saved query id")),
    responses((status = 200, body = SavedQueryOut), (status = 404, body = ApiError, content_type = "application/problem+json")))]
async fn get_saved_query(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(id), _): WithRejection<Path<Uuid>, ApiError>,
) -> Result<Json<SavedQueryOut>, ApiError> {
    Ok(Json(existing(&state, &session, id).await?.into()))
}

/// Renames and/or edits a saved query.
#[utoipa::path(put, path = "/api/saved-queries/{id}", tag = "saved-queries", request_body = SavedQueryUpdate,
    params(("id" = Uuid, Path, description = "Saved query id")),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 200, body = SavedQueryOut),
        (status = 404, body = ApiError, content_type = "application/problem+json"),
        (status = 409, body = ApiError, content_type = "application/problem+json"),
        (status = 422, body = ApiError, content_type = "application/problem+json"),
    ))]
async fn update_saved_query(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(id), _): WithRejection<Path<Uuid>, ApiError>,
    body: Result<Json<SavedQueryUpdate>, JsonRejection>,
) -> Result<Json<SavedQueryOut>, ApiError> {
    let Json(body) = body?;
    existing(&state, &session, id).await?;
    let request = SaveQuery {
        id: Some(id),
        name: body.name,
        sql: body.sql,
    };
    Ok(Json(save(&state, &session, request).await?.into()))
}

/// Deletes a saved query.
#[utoipa::path(delete, path = "/api/saved-queries/{id}", tag = "saved-queries",
    params(("id" = Uuid, Path, description = "Saved query id")),
    security(("session" = [], "csrf" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError, content_type = "application/problem+json")))]
async fn delete_saved_query(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(id), _): WithRejection<Path<Uuid>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let deleted = state
        .placement
        .library(session.user.id, |r| LibraryMsg::Delete(id, r))
        .await?
        .map_err(library_error)?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no saved query with id {id}"),
        ))
    }
}

/// The query page's behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    /// Result rows per page, 10 to 1000.
    page_size: u32,
    theme: ThemeBody,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ThemeBody {
    System,
    Light,
    Dark,
}

impl From<Preferences> for PreferencesBody {
    fn from(p: Preferences) -> Self {
        PreferencesBody {
            page_size: p.page_size,
            theme: match p.theme {
                Theme::System => ThemeBody::System,
                Theme::Light => ThemeBody::Light,
                Theme::Dark => ThemeBody::Dark,
            },
        }
    }
}

/// Your preferences.
#[utoipa::path(get, path = "/api/preferences", tag = "preferences", responses((status = 200, body = PreferencesBody)))]
async fn get_preferences(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
) -> Result<Json<PreferencesBody>, ApiError> {
    let prefs = state
        .placement
        .library(session.user.id, LibraryMsg::GetPreferences)
        .await?;
    Ok(Json(prefs.into()))
}

/// Replaces your preferences.
#[utoipa::path(put, path = "/api/preferences", tag = "preferences", request_body = PreferencesBody,
    security(("session" = [], "csrf" = [])),
    responses((status = 200, body = PreferencesBody), (status = 422, body = ApiError, content_type = "application/problem+json")))]
async fn set_preferences(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    body: Result<Json<PreferencesBody>, JsonRejection>,
) -> Result<Json<PreferencesBody>, ApiError> {
    let Json(body) = body?;
    let prefs = Preferences {
        page_size: body.page_size,
        theme: match body.theme {
            ThemeBody::System => Theme::System,
            ThemeBody::Light => Theme::Light,
            ThemeBody::Dark => Theme::Dark,
        },
    };
    let saved = state
        .placement
        .library(session.user.id, |r| {
            LibraryMsg::SetPreferences(prefs.clone(), r)
        })
        .await?
        .map_err(library_error)?;
    Ok(Json(saved.into()))
}
