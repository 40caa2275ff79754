//! The HTTP edge: one axum application serving pages (askama + htmx), the JSON API, browser
//! assets, health and metrics.
//!
//! The edge holds no user state of its own: every request reaches actors through
//! [`Placement`], and authentication is answered by the Accounts actor.
//!
//! Must not: construct or assume a local actor; touch the store; send a secret to the browser.

mod api;
mod assets;
mod auth;
mod error;
mod library;
mod metrics;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use larder_actors::Placement;
use larder_actors::accounts::AccountsMsg;
use tower_http::set_header::SetResponseHeaderLayer;

pub use assets::Assets;
pub use metrics::{PrometheusHandle, install_recorder};

use crate::config::Config;

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub placement: Placement,
    pub config: Arc<Config>,
    pub assets: Arc<Assets>,
    pub metrics: PrometheusHandle,
    /// Where people reach this node, without a trailing slash (`http://127.0.0.1:8080`).
    pub base_url: Arc<str>,
}

impl AppState {
    /// Cookies get `Secure` when people reach us over https.
    fn secure_cookies(&self) -> bool {
        self.base_url.starts_with("https://")
    }

    fn is_admin(&self, user_name: &str) -> bool {
        self.config
            .auth
            .admins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(user_name))
    }
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::landing))
        .route("/login/{token}", get(auth::login))
        .route("/logout", post(auth::logout))
        .route("/query", get(pages::query))
        .route("/queries", get(library::list).post(library::save))
        .route("/queries/new", get(library::new_form))
        .route("/queries/{id}/open", get(library::open))
        .route("/queries/{id}", axum::routing::delete(library::delete))
        .route("/settings", get(pages::settings))
        .route("/settings/preferences", post(pages::save_preferences))
        .route("/admin/actors", get(pages::actors))
        .route("/admin/actors/rows", get(pages::actor_rows));

    Router::new()
        .merge(pages)
        .merge(api::router())
        .route("/healthz", get(pages::healthz))
        .route("/metrics", get(metrics::render))
        .route("/static/{version}/{*path}", get(assets::versioned))
        .route("/samples/{*path}", get(assets::sample))
        .route("/app.css", get(assets::unversioned))
        .route("/favicon.svg", get(assets::unversioned))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::csrf_guard,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Content-Security-Policy: nothing but this origin, ever (the island's WebAssembly needs
/// `wasm-unsafe-eval`; htmx's injected indicator styles are turned off in the page config).
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; \
                   base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// A fresh one-time login link for the named local user (created on first use).
pub async fn login_link(state: &AppState, user: &str) -> Result<String, String> {
    if !state.config.auth.local.enabled {
        return Err("local login is disabled on this node (auth.local.enabled = false)".into());
    }
    let user = user.to_owned();
    let issued = state
        .placement
        .accounts(|r| AccountsMsg::IssueLoginToken(user.clone(), r))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(format!("{}/login/{}", state.base_url, issued.token))
}
