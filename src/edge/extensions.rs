//! `GET|HEAD /duckdb-ext/{version}/{platform}/{name}.duckdb_extension.wasm`: the DuckDB extension
//! mirror over HTTP, the repository the island points DuckDB-WASM at
//! (`custom_extension_repository`). DuckDB-WASM's worker fetches these with a synchronous
//! same-origin XMLHttpRequest, which carries the session cookie.
//!
//! Answers are `application/wasm` (instantiation hangs on anything else), streamed from disk with
//! ETag, Last-Modified, conditional and range requests, and the file's `.br`/`.gz` variant when
//! the browser accepts it. Errors are plain text: DuckDB only sees the status, people with curl
//! and the logs see the sentence.
//!
//! Must not: serve to a request without a session; build a path from the request other than
//! through [`ExtensionFile::parse`].

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use super::AppState;
use super::auth::ApiUser;
use crate::extensions::{ExtensionFile, MirrorError};

/// The mirror's URL prefix on this origin (the island's `custom_extension_repository`).
pub const REPOSITORY: &str = "/duckdb-ext";

/// A version's extension builds do not change; an operator who replaces one is seen within a
/// day (and revalidation is one cheap conditional request).
const CACHE_CONTROL: &str = "private, max-age=86400";

/// An answer of the mirror that is not a file: plain text.
fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

impl IntoResponse for MirrorError {
    fn into_response(self) -> Response {
        let status = match &self {
            MirrorError::NotMirrored(_) | MirrorError::NotUpstream(_) => StatusCode::NOT_FOUND,
            MirrorError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            MirrorError::Local { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        plain(status, self.to_string())
    }
}

/// `GET /duckdb-ext/{*path}` (HEAD too): one extension file, fetched from the upstream first
/// if it is missing and one is configured.
pub async fn serve(
    State(state): State<AppState>,
    user: Result<ApiUser, Response>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    if let Err(refused) = user {
        if refused.status() != StatusCode::UNAUTHORIZED {
            return refused;
        }
        return plain(
            StatusCode::UNAUTHORIZED,
            "sign in first: DuckDB extensions are served to signed-in sessions only".to_owned(),
        );
    }
    let file = match ExtensionFile::parse(&path) {
        Ok(file) => file,
        Err(e) => return plain(StatusCode::NOT_FOUND, e.to_string()),
    };
    let on_disk = match state.extensions.locate(&file).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let wasm = "application/wasm".parse().expect("a valid media type");
    let service = ServeFile::new_with_mime(on_disk, &wasm)
        .precompressed_br()
        .precompressed_gzip();
    let mut res = match service.oneshot(req).await {
        Ok(res) => res.map(Body::new),
        Err(never) => match never {},
    };
    let status = res.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
    }
    if status.is_success() {
        state.extensions.note_served();
    }
    res
}
