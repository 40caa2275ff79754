//! `/api/storage/*`: the user's backends, and proxy credentials for S3 clients.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::edge::AppState;
use crate::edge::auth::ApiUser;
use crate::edge::error::ApiError;
use crate::s3::credentials::{self, Access, Backends, Scope};
use crate::storage::registry::ResolveError;

/// A backend the caller can use.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BackendOut {
    /// Also the bucket name S3 clients use.
    name: String,
    /// `local` or `s3`.
    kind: String,
    /// `builtin`, `shared` (the operator's) or `user` (added in Settings).
    provenance: String,
    /// Canonical URI prefix for catalog entries: `store://<name>/`.
    uri: String,
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        }
    }
}

/// Every storage backend you can use.
#[utoipa::path(get, path = "/api/storage/backends", tag = "storage",
    responses((status = 200, body = Vec<BackendOut>), (status = 401, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn list_backends(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
) -> Result<Json<Vec<BackendOut>>, ApiError> {
    let list = state.registry.list(session.user.id).await?;
    Ok(Json(
        list.into_iter()
            .map(|b| BackendOut {
                uri: format!("store://{}/", b.name),
                kind: b.kind.to_owned(),
                provenance: serde_json::to_value(b.provenance)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                name: b.name,
            })
            .collect(),
    ))
}

/// What the credentials may do. Every field is optional: an empty body means read-write
/// access to all your backends for the default lifetime.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ProxyCredentialRequest {
    /// Backend names; omitted = all of them, now and later.
    backends: Option<Vec<String>>,
    /// `read` or `read-write` (default).
    access: Option<String>,
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Lifetime in seconds (default `s3.credential_ttl`, at most `s3.max_credential_ttl`).
    ttl_seconds: Option<u64>,
}

/// Short-lived S3 credentials for Larder's S3 proxy.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProxyCredentialOut {
    access_key_id: String,
    /// Shown once; derivable only by Larder.
    secret_access_key: String,
    /// The dedicated S3 listener, for standard clients (aws cli, boto3, rclone, DuckDB).
    endpoint: String,
    /// The same proxy on Larder's own origin, for the browser.
    browser_endpoint: String,
    region: String,
    /// RFC 3339.
    expires_at: String,
    /// `read` or `read-write`.
    access: String,
    /// The backends reached (`null` = all).
    backends: Option<Vec<String>>,
    prefix: String,
}

/// Mints S3 credentials scoped to you (and, optionally, to some backends, a key prefix, read
/// access, a lifetime). Nothing is stored: the access key id carries its scope.
#[utoipa::path(post, path = "/api/storage/proxy-credentials", tag = "storage",
    request_body(content = Option<ProxyCredentialRequest>, description = "Optional scope; empty = all backends, read-write"),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, body = ProxyCredentialOut),
        (status = 404, description = "A named backend does not exist", body = ApiError, content_type = "application/problem+json"),
        (status = 422, body = ApiError, content_type = "application/problem+json"),
    ))]
pub(super) async fn mint_proxy_credentials(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    body: Result<Json<ProxyCredentialRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ProxyCredentialOut>), ApiError> {
    let request = match body {
        Ok(Json(r)) => r,
        // An empty body (with or without a JSON content type) means "the defaults".
        Err(JsonRejection::MissingJsonContentType(_)) => ProxyCredentialRequest::default(),
        Err(e) if e.body_text().contains("EOF while parsing") => ProxyCredentialRequest::default(),
        Err(e) => return Err(e.into()),
    };
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    let access = match request.access.as_deref() {
        None | Some("read-write") => Access::ReadWrite,
        Some("read") => Access::Read,
        Some(other) => {
            return Err(invalid(format!(
                "access must be \"read\" or \"read-write\", not {other:?}"
            )));
        }
    };
    let config = &state.config.s3;
    let ttl = match request.ttl_seconds {
        None => config.credential_ttl,
        Some(s) if s < 60 => return Err(invalid("ttl_seconds must be at least 60".into())),
        Some(s) => Duration::from_secs(s),
    };
    if ttl > config.max_credential_ttl {
        return Err(invalid(format!(
            "ttl_seconds must be at most {}",
            config.max_credential_ttl.as_secs()
        )));
    }
    let backends = match &request.backends {
        None => Backends::All,
        Some(names) if names.is_empty() => {
            return Err(invalid(
                "backends, when given, must name at least one".into(),
            ));
        }
        Some(names) => {
            let mine = state.registry.list(session.user.id).await?;
            if let Some(missing) = names.iter().find(|n| !mine.iter().any(|b| &b.name == *n)) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no backend named {missing:?}"),
                ));
            }
            Backends::Named(names.clone())
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let scope = Scope {
        user: session.user.id,
        backends,
        access,
        prefix: request.prefix.clone().unwrap_or_default(),
        expires_at: now + ttl.as_secs(),
    };
    let minted =
        credentials::mint(&state.keys.proxy, &scope).map_err(|e| invalid(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(ProxyCredentialOut {
            access_key_id: minted.access_key_id,
            secret_access_key: minted.secret_access_key,
            endpoint: state.s3_url.to_string(),
            browser_endpoint: format!("{}/s3", state.base_url),
            region: config.region.clone(),
            expires_at: super::rfc3339((scope.expires_at * 1000) as i64),
            access: match access {
                Access::Read => "read".into(),
                Access::ReadWrite => "read-write".into(),
            },
            backends: request.backends,
            prefix: scope.prefix,
        }),
    ))
}
