//! Browser assets: the vendored, precompressed files in `static/dist/` (built by `cargo build`
//! through npm, see `build.rs`) under a content-versioned URL with immutable caching, and the
//! sample datasets in `static/samples/`.

use std::path::{Path as FsPath, PathBuf};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

use super::AppState;

/// The asset build this node serves.
#[derive(Debug)]
pub struct Assets {
    version: String,
    dist: PathBuf,
    samples: PathBuf,
}

#[derive(Deserialize)]
struct Manifest {
    version: String,
}

impl Assets {
    /// Reads `dir/dist/manifest.json`; fails with instructions when the assets were not built.
    pub fn load(dir: &FsPath) -> anyhow::Result<Assets> {
        let dist = dir.join("dist");
        let manifest_path = dist.join("manifest.json");
        let manifest = std::fs::read(&manifest_path).with_context(|| {
            format!(
                "browser assets are not built ({} is missing); `cargo build` builds them with npm, \
                 or point assets.dir at a directory that has them",
                manifest_path.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        Ok(Assets {
            version: manifest.version,
            dist,
            samples: dir.join("samples"),
        })
    }

    /// URL prefix of the current build's assets, e.g. `/static/3f9a0c1d2e4b`.
    pub fn prefix(&self) -> String {
        format!("/static/{}", self.version)
    }
}

async fn serve_from(dir: &FsPath, path: &str, req: Request) -> Response {
    let mut req = req;
    let Ok(uri) = format!("/{path}").parse::<Uri>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    *req.uri_mut() = uri;
    let service = ServeDir::new(dir).precompressed_br().precompressed_gzip();
    match service.oneshot(req).await {
        Ok(res) => res.map(Body::new),
        Err(never) => match never {},
    }
}

/// `GET /static/{version}/{*path}`: one asset of the current build, cached forever.
pub async fn versioned(
    State(state): State<AppState>,
    Path((version, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    if version != state.assets.version {
        return (
            StatusCode::NOT_FOUND,
            "unknown asset version: reload the page",
        )
            .into_response();
    }
    let mut res = serve_from(&state.assets.dist, &path, req).await;
    if res.status().is_success() {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    res
}

/// `GET /samples/{*path}`: datasets Larder ships for first-time users.
pub async fn sample(
    State(state): State<AppState>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let mut res = serve_from(&state.assets.samples, &path, req).await;
    if res.status().is_success() {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
    }
    res
}

/// `GET /app.css` and `/favicon.svg`: assets at fixed addresses, for pages rendered without the
/// asset version (error pages). Revalidated on every use.
pub async fn unversioned(State(state): State<AppState>, req: Request) -> Response {
    let file = req.uri().path().trim_start_matches('/').to_owned();
    let mut res = serve_from(&state.assets.dist, &file, req).await;
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
