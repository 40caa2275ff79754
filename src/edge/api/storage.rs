//! `/api/storage/*`: the user's backends, and proxy credentials for S3 clients.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::edge::AppState;
use crate::edge::auth::{ApiOwner, ApiUser};
use crate::edge::error::ApiError;
use crate::s3::credentials::{self, Access, Backends, Scope};
use crate::storage::registry::{ResolveError, S3Fields};

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
    ApiOwner(session): ApiOwner,
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

/// An `s3` backend's settings. On update, leave `secret_access_key` out to keep the stored one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendIn {
    /// 3–63 of a-z, 0-9, '-'; also the bucket name S3 clients use.
    name: String,
    /// e.g. `https://s3.eu-west-1.amazonaws.com`, `https://<account>.r2.cloudflarestorage.com`.
    endpoint: String,
    /// Default `us-east-1` (R2: `auto`).
    region: Option<String>,
    bucket: String,
    /// Keys are stored under this prefix of the bucket.
    prefix: Option<String>,
    /// Path-style addressing (default true: MinIO, Garage, R2 all accept it).
    path_style: Option<bool>,
    access_key_id: String,
    /// Write-only: never returned.
    secret_access_key: Option<String>,
}

/// A user-added backend as its owner sees it (the secret is never returned).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BackendDetail {
    id: uuid::Uuid,
    name: String,
    endpoint: String,
    region: String,
    bucket: String,
    prefix: String,
    path_style: bool,
    access_key_id: String,
    /// Whether a secret is stored.
    has_secret: bool,
    uri: String,
}

/// Validates an `s3` backend's settings and turns them into a vault record (the API's and the
/// Settings page's one validation).
pub(crate) fn backend_record(
    id: Option<uuid::Uuid>,
    name: &str,
    fields: &S3Fields,
    secret: Option<String>,
    reserved: &[String],
) -> Result<larder_actors::vault::PutRecord, String> {
    larder_actors::vault::validate_name(name).map_err(|e| e.to_string())?;
    if reserved.iter().any(|r| r == name) {
        return Err(format!(
            "\"{name}\" is the name of a built-in or shared backend"
        ));
    }
    let endpoint = fields.endpoint.trim();
    let url =
        url::Url::parse(endpoint).map_err(|_| format!("the endpoint {endpoint:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("the endpoint must be an http:// or https:// URL".into());
    }
    if fields.bucket.trim().is_empty() {
        return Err("the bucket is required".into());
    }
    if fields.access_key_id.trim().is_empty() {
        return Err("the access key id is required".into());
    }
    let region = Some(fields.region.trim())
        .filter(|r| !r.is_empty())
        .unwrap_or("us-east-1");
    if !region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!("{region:?} is not a region name"));
    }
    if id.is_none() && secret.as_deref().is_none_or(str::is_empty) {
        return Err("the secret access key is required".into());
    }
    let normalised = S3Fields {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        region: region.to_owned(),
        bucket: fields.bucket.trim().to_owned(),
        prefix: fields.prefix.trim().trim_matches('/').to_owned(),
        path_style: fields.path_style,
        access_key_id: fields.access_key_id.trim().to_owned(),
    };
    // Blank means "keep the stored secret".
    let secret = secret.filter(|s| !s.is_empty());
    Ok(larder_actors::vault::PutRecord {
        id,
        kind: larder_actors::vault::RecordKind::Backend,
        name: name.to_owned(),
        settings: normalised.to_settings(),
        secrets: std::collections::BTreeMap::from([(
            crate::storage::registry::fields::SECRET_ACCESS_KEY.to_owned(),
            secret,
        )]),
    })
}

fn detail(r: larder_actors::vault::RecordSummary) -> BackendDetail {
    use crate::storage::registry::fields;
    let f = S3Fields::read(&r.settings);
    BackendDetail {
        id: r.id,
        uri: format!("store://{}/", r.name),
        endpoint: f.endpoint,
        region: f.region,
        bucket: f.bucket,
        prefix: f.prefix,
        path_style: f.path_style,
        access_key_id: f.access_key_id,
        has_secret: r
            .secret_names
            .iter()
            .any(|n| n == fields::SECRET_ACCESS_KEY),
        name: r.name,
    }
}

fn vault_error(e: larder_actors::vault::VaultError) -> ApiError {
    use larder_actors::vault::VaultError;
    let status = match e {
        VaultError::NameTaken { .. } => StatusCode::CONFLICT,
        VaultError::NotFound(_) => StatusCode::NOT_FOUND,
        VaultError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

async fn put_backend(
    state: &AppState,
    user: larder_actors::UserId,
    id: Option<uuid::Uuid>,
    body: BackendIn,
) -> Result<BackendDetail, ApiError> {
    let fields = S3Fields {
        endpoint: body.endpoint,
        region: body.region.unwrap_or_default(),
        bucket: body.bucket,
        prefix: body.prefix.unwrap_or_default(),
        path_style: body.path_style.unwrap_or(true),
        access_key_id: body.access_key_id,
    };
    let record = backend_record(
        id,
        &body.name,
        &fields,
        body.secret_access_key,
        &state.registry.reserved_names(),
    )
    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    let saved = state
        .placement
        .vault(user, |r| {
            larder_actors::vault::VaultMsg::Put(record.clone(), r)
        })
        .await?
        .map_err(vault_error)?;
    Ok(detail(saved))
}

async fn find_backend(
    state: &AppState,
    user: larder_actors::UserId,
    name: &str,
) -> Result<larder_actors::vault::ResolvedRecord, ApiError> {
    use larder_actors::vault::{RecordKind, VaultMsg};
    state
        .placement
        .vault(user, |r| {
            VaultMsg::Resolve(RecordKind::Backend, name.to_owned(), r)
        })
        .await?
        .map_err(vault_error)
}

/// Adds an `s3` backend (any S3-compatible service).
#[utoipa::path(post, path = "/api/storage/backends", tag = "storage", request_body = BackendIn,
    security(("session" = [], "csrf" = [])),
    responses((status = 201, body = BackendDetail),
        (status = 409, body = ApiError, content_type = "application/problem+json"),
        (status = 422, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn create_backend(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    body: Result<Json<BackendIn>, JsonRejection>,
) -> Result<(StatusCode, Json<BackendDetail>), ApiError> {
    let Json(body) = body?;
    Ok((
        StatusCode::CREATED,
        Json(put_backend(&state, session.user.id, None, body).await?),
    ))
}

/// One of your backends (by name or id), without its secret.
#[utoipa::path(get, path = "/api/storage/backends/{name}", tag = "storage",
    params(("name" = String, Path, description = "Backend name or id")),
    responses((status = 200, body = BackendDetail), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn get_backend(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<BackendDetail>, ApiError> {
    let r = find_backend(&state, session.user.id, &name).await?;
    Ok(Json(detail(larder_actors::vault::RecordSummary {
        id: r.id,
        kind: r.kind,
        name: r.name,
        settings: r.body.settings,
        secret_names: r.body.secrets.into_keys().collect(),
        created_at: 0,
        updated_at: r.updated_at,
    })))
}

/// Edits (or renames) one of your backends; omit `secret_access_key` to keep it.
#[utoipa::path(put, path = "/api/storage/backends/{name}", tag = "storage", request_body = BackendIn,
    params(("name" = String, Path, description = "Backend name or id")),
    security(("session" = [], "csrf" = [])),
    responses((status = 200, body = BackendDetail), (status = 404, body = ApiError, content_type = "application/problem+json"),
        (status = 409, body = ApiError, content_type = "application/problem+json"), (status = 422, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn update_backend(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Result<Json<BackendIn>, JsonRejection>,
) -> Result<Json<BackendDetail>, ApiError> {
    let Json(body) = body?;
    let existing = find_backend(&state, session.user.id, &name).await?;
    Ok(Json(
        put_backend(&state, session.user.id, Some(existing.id), body).await?,
    ))
}

/// Removes one of your backends (its objects stay where they are).
#[utoipa::path(delete, path = "/api/storage/backends/{name}", tag = "storage",
    params(("name" = String, Path, description = "Backend name or id")),
    security(("session" = [], "csrf" = [])),
    responses((status = 204, description = "Removed"), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn delete_backend(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    let existing = find_backend(&state, session.user.id, &name).await?;
    state
        .placement
        .vault(session.user.id, |r| {
            larder_actors::vault::VaultMsg::Delete(existing.id, r)
        })
        .await?
        .map_err(vault_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of testing a backend.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BackendTest {
    ok: bool,
    /// What was done, or what went wrong.
    detail: String,
    elapsed_ms: u64,
}

/// A real round trip against the backend: write, read back, delete a small probe object.
#[utoipa::path(post, path = "/api/storage/backends/{name}/test", tag = "storage",
    params(("name" = String, Path, description = "Backend name or id")),
    security(("session" = [], "csrf" = [])),
    responses((status = 200, body = BackendTest), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn test_backend(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<BackendTest>, ApiError> {
    let resolved = state.registry.resolve(session.user.id, &name).await?;
    Ok(Json(
        crate::storage::round_trip(resolved.backend.as_ref())
            .await
            .into(),
    ))
}

impl From<crate::storage::RoundTrip> for BackendTest {
    fn from(r: crate::storage::RoundTrip) -> Self {
        BackendTest {
            ok: r.result.is_ok(),
            detail: match r.result {
                Ok(()) => "wrote, read back and deleted a probe object".to_owned(),
                Err(e) => e,
            },
            elapsed_ms: r.elapsed.as_millis() as u64,
        }
    }
}
