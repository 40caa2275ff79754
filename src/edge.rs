//! The HTTP edge: one axum application serving pages (askama + htmx), the JSON API, browser
//! assets, the DuckDB extension mirror, health and metrics.
//!
//! The edge holds no user state of its own: every request reaches actors through
//! [`Placement`], and authentication is answered by the Accounts actor.
//!
//! Must not: construct or assume a local actor; touch the store; send a secret to the browser.

mod allowlist;
mod api;
mod assets;
mod auth;
mod connections;
mod error;
mod extensions;
mod library;
mod metrics;
pub mod oauth;
mod oidc;
mod pages;
mod settings;
mod tables;
mod tokens;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::routing::{any, get, post};
use larder_actors::Placement;
use larder_actors::accounts::AccountsMsg;
use larder_actors::vault::VaultMsg;
use tower_http::set_header::SetResponseHeaderLayer;

pub use assets::Assets;
pub use metrics::{PrometheusHandle, install_recorder};
pub use oidc::OidcProviders;

use crate::config::Config;
use crate::extensions::ExtensionMirror;
use crate::keys::Keys;
use crate::s3::S3Proxy;
use crate::storage::registry::Registry;

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub placement: Placement,
    pub config: Arc<Config>,
    pub assets: Arc<Assets>,
    pub metrics: PrometheusHandle,
    /// Where people reach this node, without a trailing slash (`http://127.0.0.1:8080`).
    pub base_url: Arc<str>,
    /// The dedicated S3 listener's URL, without a trailing slash.
    pub s3_url: Arc<str>,
    pub keys: Arc<Keys>,
    /// The users' storage backends.
    pub registry: Arc<Registry>,
    pub s3: S3Proxy,
    /// The DuckDB extension mirror.
    pub extensions: ExtensionMirror,
    /// The users' catalogs, as every surface uses them.
    pub catalogs: crate::catalog::Catalogs,
    /// Signs and checks OAuth access tokens.
    pub access_tokens: Arc<oauth::jwt::AccessTokens>,
    /// The OpenID Connect providers people may sign in with.
    pub oidc: Arc<OidcProviders>,
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
        .route("/login/{token}", get(auth::login_page))
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/query", get(pages::query))
        .route("/queries", get(library::list).post(library::save))
        .route("/queries/new", get(library::new_form))
        .route("/queries/{id}/open", get(library::open))
        .route("/queries/{id}", axum::routing::delete(library::delete))
        .route("/catalog", get(tables::page))
        .route("/catalog/tables", get(tables::list))
        .route("/catalog/commits", post(tables::commit))
        .route("/catalog/tables/{table}/history", get(tables::history))
        .route(
            "/catalog/tables/{table}/edit",
            get(tables::edit).post(tables::save_edit),
        )
        .route("/settings", get(pages::settings))
        .route("/settings/preferences", post(pages::save_preferences))
        .route(
            "/settings/backends",
            get(settings::section).post(settings::create),
        )
        .route(
            "/settings/backends/{backend}",
            get(settings::row)
                .put(settings::update)
                .delete(settings::delete),
        )
        .route("/settings/backends/{backend}/edit", get(settings::edit))
        .route("/settings/backends/{backend}/test", post(settings::test))
        .route("/settings/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/settings/tokens/{id}",
            axum::routing::delete(tokens::revoke),
        )
        .route("/settings/connections", get(connections::list))
        .route(
            "/settings/connections/{id}",
            axum::routing::delete(connections::revoke),
        )
        .route("/authorize", get(oauth::authorize).post(oauth::decide))
        .route("/admin/actors", get(pages::actors))
        .route("/admin/actors/rows", get(pages::actor_rows))
        .route("/auth/oidc/{provider}", get(oidc::start))
        .route("/auth/oidc/{provider}/callback", get(oidc::callback))
        .route("/admin/allowlist", get(allowlist::page))
        .route(
            "/admin/allowlist/entries",
            get(allowlist::list)
                .post(allowlist::add)
                .delete(allowlist::remove),
        );

    Router::new()
        .merge(pages)
        .merge(api::router())
        .route("/s3", any(s3_on_origin))
        .route("/s3/{*path}", any(s3_on_origin))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(pages::healthz))
        .merge(oauth_public())
        .route("/metrics", get(metrics::render))
        .route("/static/{version}/{*path}", get(assets::versioned))
        .route("/samples/{*path}", get(assets::sample))
        .route(
            &format!("{}/{{*path}}", extensions::REPOSITORY),
            get(extensions::serve),
        )
        .route("/app.css", get(assets::unversioned))
        .route("/favicon.svg", get(assets::unversioned))
        .fallback(pages::not_found)
        .method_not_allowed_fallback(pages::method_not_allowed)
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
        // Pages and API answers are one user's data: never kept by caches (assets say otherwise).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Content-Security-Policy: nothing but this origin, ever (the island's WebAssembly needs
/// `wasm-unsafe-eval`; htmx's injected indicator styles are turned off in the page config).
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; \
                   base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// What OAuth clients call without a session: metadata, the JWKS, registration, token and
/// revocation. Open to any origin (browser-based MCP clients): none of it uses cookies.
fn oauth_public() -> Router<AppState> {
    use tower_http::cors::{Any, CorsLayer};
    // Every route answers OPTIONS too, so the CORS layer sees preflights (the app-wide
    // method-not-allowed fallback would answer them otherwise).
    let preflight = || async { http::StatusCode::NO_CONTENT };
    Router::new()
        .route("/.well-known/jwks.json", get(jwks).options(preflight))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata).options(preflight),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(oauth::protected_resource).options(preflight),
        )
        .route(
            "/.well-known/oauth-protected-resource/api",
            get(oauth::protected_resource).options(preflight),
        )
        .route("/oauth/register", post(oauth::register).options(preflight))
        .route("/oauth/token", post(oauth::token).options(preflight))
        .route("/oauth/revoke", post(oauth::revoke).options(preflight))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([http::Method::GET, http::Method::POST])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    http::HeaderName::from_static("mcp-protocol-version"),
                ])
                .max_age(std::time::Duration::from_secs(3600)),
        )
}

/// `GET /.well-known/jwks.json`: the public key access tokens are signed with.
async fn jwks(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "keys": [state.keys.jwt.public_jwk()] }))
}

/// The S3 proxy under `/s3` on the main origin (the island's same-origin endpoint).
async fn s3_on_origin(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    state.s3.handle("/s3", req).await
}

/// The dedicated S3 listener: the proxy at the root, path style, and nothing else.
pub fn s3_listener_app(state: AppState) -> Router {
    Router::new()
        .fallback(
            |State(state): State<AppState>, req: axum::extract::Request| async move {
                state.s3.handle("", req).await
            },
        )
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

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

/// `larder allow add|remove|list`: the sign-up allowlist, as text for the terminal.
pub async fn allowlist_command(state: &AppState, command: AllowCommand) -> Result<String, String> {
    use larder_actors::accounts::allowlist::normalise_pattern;
    let (pattern, add) = match command {
        AllowCommand::List => {
            let entries = state
                .placement
                .accounts(AccountsMsg::ListAllowed)
                .await
                .map_err(|e| e.to_string())?;
            let lines: Vec<&str> = entries.iter().map(|e| e.pattern.as_str()).collect();
            return Ok(lines.join("\n"));
        }
        AllowCommand::Add(p) => (p, true),
        AllowCommand::Remove(p) => (p, false),
    };
    let normal = normalise_pattern(&pattern).map_err(|e| e.to_string())?;
    let changed = state
        .placement
        .accounts(|r| {
            if add {
                AccountsMsg::Allow(pattern.clone(), r)
            } else {
                AccountsMsg::Disallow(pattern.clone(), r)
            }
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(match (add, changed) {
        (true, true) => format!("added {normal} to the allowlist"),
        (true, false) => format!("{normal} was already on the allowlist"),
        (false, true) => format!("removed {normal} from the allowlist"),
        (false, false) => format!("{normal} was not on the allowlist"),
    })
}

/// What `larder allow` asks for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowCommand {
    Add(String),
    Remove(String),
    List,
}

/// `larder vault rotate`: a new current vault key, then every user's records re-sealed under it.
pub async fn rotate_vault(state: &AppState) -> Result<String, String> {
    let version = state
        .keys
        .rotate_vault()
        .map_err(|e| format!("could not rotate the vault key: {e:#}"))?;
    let users = state
        .placement
        .accounts(AccountsMsg::ListUsers)
        .await
        .map_err(|e| e.to_string())?;
    let mut resealed = 0;
    for user in &users {
        resealed += state
            .placement
            .vault(user.id, VaultMsg::Reseal)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("re-sealing {}'s records failed: {e}", user.name))?;
    }
    tracing::info!(version, resealed, "vault key rotated");
    Ok(format!(
        "vault key version {version} is current; re-sealed {resealed} record(s) of {} user(s)",
        users.len()
    ))
}
