//! `/api/duckdb-extensions`: what the extension mirror can give the island, so it can choose per
//! table between DuckDB's native readers and the Arrow path.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::edge::AppState;
use crate::edge::auth::ApiUser;
use crate::edge::error::ApiError;
use crate::edge::extensions::REPOSITORY;
use crate::extensions::{Platform, is_version};

/// Which DuckDB build is asking. Both optional: each narrows the answer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExtensionsFilter {
    /// The DuckDB version as extension URLs name it, e.g. `v1.4.3`.
    version: Option<String>,
    /// `wasm_eh`, `wasm_mvp` or `wasm_threads`.
    platform: Option<String>,
}

/// The extension mirror as the island sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DuckdbExtensions {
    /// The value for DuckDB's `custom_extension_repository`, relative to this origin.
    repository: String,
    /// Whether a missing extension is fetched from an upstream repository on first use (so any
    /// extension it has can load, after one download).
    upstream: bool,
    /// Names of the extensions already in the mirror for the requested version and platform
    /// (for all of them, when not narrowed), sorted.
    available: Vec<String>,
    /// Every file behind `available`.
    extensions: Vec<MirroredExtension>,
}

/// An extension file in the mirror.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MirroredExtension {
    version: String,
    platform: String,
    name: String,
}

/// The DuckDB extension mirror: its repository URL, whether it can fetch, what it holds.
#[utoipa::path(get, path = "/api/duckdb-extensions", tag = "duckdb", params(ExtensionsFilter),
    responses(
        (status = 200, body = DuckdbExtensions),
        (status = 400, description = "Not a version or platform", body = ApiError, content_type = "application/problem+json"),
        (status = 401, body = ApiError, content_type = "application/problem+json"),
    ))]
pub(super) async fn duckdb_extensions(
    State(state): State<AppState>,
    _user: ApiUser,
    filter: Result<Query<ExtensionsFilter>, QueryRejection>,
) -> Result<Json<DuckdbExtensions>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if let Some(v) = &filter.version
        && !is_version(v)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "version must look like v1.4.3",
        ));
    }
    let platform = match &filter.platform {
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "platform must be wasm_eh, wasm_mvp or wasm_threads",
            )
        })?),
        None => None,
    };
    let extensions: Vec<MirroredExtension> = state
        .extensions
        .list()
        .await
        .into_iter()
        .filter(|m| filter.version.as_ref().is_none_or(|v| *v == m.version))
        .filter(|m| platform.is_none_or(|p| p == m.platform))
        .map(|m| MirroredExtension {
            platform: m.platform.as_str().to_owned(),
            version: m.version,
            name: m.name,
        })
        .collect();
    let mut available: Vec<String> = extensions.iter().map(|e| e.name.clone()).collect();
    available.sort();
    available.dedup();
    Ok(Json(DuckdbExtensions {
        repository: REPOSITORY.to_owned(),
        upstream: state.extensions.has_upstream(),
        available,
        extensions,
    }))
}
