//! Whole pages (askama templates in `templates/`) and the small routes around them: landing,
//! query, settings, the admin actor inspector, health.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use larder_actors::accounts::{AccountsMsg, Session};
use larder_actors::library::{LibraryMsg, Preferences, Theme};
use larder_actors::roster::ActorInfo;
use larder_actors::{UserId, now_millis};
use serde::Deserialize;

use super::AppState;
use super::auth::{AdminUser, PageUser};
use super::error::{Flash, WebError};
use super::library::SavedQueryView;

/// What every page's layout needs: who is signed in, the CSRF token, where assets live.
pub struct Frame {
    pub user: Option<String>,
    pub csrf: String,
    pub assets: String,
    pub is_admin: bool,
    pub theme: &'static str,
    /// Which nav entry is current.
    pub nav: &'static str,
}

impl Frame {
    pub fn anonymous(state: &AppState) -> Frame {
        Frame {
            user: None,
            csrf: String::new(),
            assets: state.assets.prefix(),
            is_admin: false,
            theme: Theme::System.as_str(),
            nav: "",
        }
    }

    pub fn signed_in(
        state: &AppState,
        session: &Session,
        prefs: &Preferences,
        nav: &'static str,
    ) -> Frame {
        Frame {
            user: Some(session.user.name.clone()),
            csrf: session.csrf_token.clone(),
            assets: state.assets.prefix(),
            is_admin: state.is_admin(&session.user.name),
            theme: prefs.theme.as_str(),
            nav,
        }
    }
}

pub async fn preferences(state: &AppState, user: UserId) -> Result<Preferences, WebError> {
    Ok(state
        .placement
        .library(user, LibraryMsg::GetPreferences)
        .await?)
}

#[derive(Template, WebTemplate)]
#[template(path = "landing.html")]
struct Landing {
    frame: Frame,
    local_login: bool,
    providers: Vec<super::oidc::ProviderButton>,
    /// The app whose authorization request sent the person here to sign in.
    connecting: Option<String>,
}

/// `GET /`: the query page for the signed in, how to sign in for everyone else.
pub async fn landing(
    State(state): State<AppState>,
    user: Option<PageUser>,
    jar: axum_extra::extract::CookieJar,
) -> Response {
    if user.is_some() {
        return Redirect::to("/query").into_response();
    }
    Landing {
        frame: Frame::anonymous(&state),
        local_login: state.config.auth.local.enabled,
        providers: state.oidc.buttons(),
        connecting: connecting_app(&state, &jar).await,
    }
    .into_response()
}

/// The name of the registered app whose `/authorize` request waits for this sign-in, if any.
async fn connecting_app(state: &AppState, jar: &axum_extra::extract::CookieJar) -> Option<String> {
    let back = super::auth::pending_return(jar)?;
    let query = back.strip_prefix("/authorize?")?;
    let client_id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())?;
    let client = state
        .placement
        .oauth(|r| larder_actors::oauth::OAuthMsg::GetClient(client_id.clone(), r))
        .await
        .ok()??;
    Some(
        client
            .client_name
            .unwrap_or_else(|| "An unnamed app".to_owned()),
    )
}

impl axum::extract::OptionalFromRequestParts<AppState> for PageUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <PageUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                parts, state,
            )
            .await
            .ok(),
        )
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "query.html")]
struct QueryPage {
    frame: Frame,
    page_size: u32,
    queries: Vec<SavedQueryView>,
    form: super::library::SaveForm,
    initial_sql: Option<String>,
}

/// `?table=orders&as_of=12` opens the query page's editor on that table as of that commit.
#[derive(Debug, Default, Deserialize)]
pub struct QueryParams {
    table: Option<String>,
    as_of: Option<u64>,
}

impl QueryParams {
    fn sql(&self) -> Option<String> {
        let table = self.table.as_deref()?;
        larder_actors::catalog::validate_name(table).ok()?;
        Some(match self.as_of {
            Some(seq) => format!("SELECT * FROM \"{table}@{seq}\" LIMIT 100;"),
            None => format!("SELECT * FROM {table} LIMIT 100;"),
        })
    }
}

/// `GET /query`: the SQL workbench with the DuckDB-WASM island and the saved-query sidebar.
pub async fn query(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Query(params): Query<QueryParams>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    let prefs = preferences(&state, user).await?;
    let queries = state.placement.library(user, LibraryMsg::List).await?;
    Ok(QueryPage {
        frame: Frame::signed_in(&state, &session, &prefs, "query"),
        page_size: prefs.page_size,
        queries: queries.iter().map(SavedQueryView::from).collect(),
        form: super::library::SaveForm::default(),
        initial_sql: params.sql(),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    frame: Frame,
    prefs: Preferences,
}

/// `GET /settings`.
pub async fn settings(
    State(state): State<AppState>,
    PageUser(session): PageUser,
) -> Result<Response, WebError> {
    let prefs = preferences(&state, session.user.id).await?;
    Ok(SettingsPage {
        frame: Frame::signed_in(&state, &session, &prefs, "settings"),
        prefs,
    }
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct PreferencesForm {
    page_size: String,
    theme: String,
}

/// `POST /settings/preferences` (htmx): answers with a flash message.
pub async fn save_preferences(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    form: Result<Form<PreferencesForm>, FormRejection>,
) -> Result<Response, WebError> {
    let invalid = |m: &str| WebError::new(StatusCode::UNPROCESSABLE_ENTITY, m).fragment();
    let Form(form) = form.map_err(|e| invalid(&e.body_text()))?;
    let page_size = form
        .page_size
        .trim()
        .parse::<u32>()
        .map_err(|_| invalid("Rows per page must be a whole number."))?;
    let theme = match form.theme.as_str() {
        "system" => Theme::System,
        "light" => Theme::Light,
        "dark" => Theme::Dark,
        other => return Err(invalid(&format!("Unknown theme \"{other}\"."))),
    };
    let prefs = Preferences { page_size, theme };
    state
        .placement
        .library(session.user.id, |r| {
            LibraryMsg::SetPreferences(prefs.clone(), r)
        })
        .await
        .map_err(|e| WebError::from(e).fragment())?
        .map_err(|e| invalid(&e.to_string()))?;
    let body = Flash {
        kind: "ok",
        message: "Preferences saved.",
    }
    .render()
    .map_err(|e| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).fragment())?;
    let mut res = axum::response::Html(body).into_response();
    // The theme applies to the whole page: let htmx reload it.
    res.headers_mut()
        .insert("HX-Refresh", axum::http::HeaderValue::from_static("true"));
    Ok(res)
}

/// One row of the inspector, formatted for people.
pub struct ActorRow {
    kind: &'static str,
    user: String,
    state: String,
    uptime: String,
    messages: u64,
    restarts: u32,
    last_error: String,
}

fn actor_rows_for(state: &AppState, users: &[larder_actors::accounts::User]) -> Vec<ActorRow> {
    let now = now_millis();
    state
        .placement
        .actors()
        .into_iter()
        .map(|a: ActorInfo| ActorRow {
            kind: a.key.kind.as_str(),
            user: a.key.user.map_or_else(String::new, |id| {
                users
                    .iter()
                    .find(|u| u.id == id)
                    .map_or_else(|| id.to_string(), |u| u.name.clone())
            }),
            state: a.state,
            uptime: human_duration(now - a.started_at),
            messages: a.messages,
            restarts: a.restarts,
            last_error: a.last_error.unwrap_or_default(),
        })
        .collect()
}

fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_actors.html")]
struct ActorsPage {
    frame: Frame,
    rows: Vec<ActorRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/actor_rows.html")]
struct ActorRows {
    rows: Vec<ActorRow>,
}

/// `GET /admin/actors`: the live actor inspector (admins only).
pub async fn actors(
    State(state): State<AppState>,
    AdminUser(session): AdminUser,
) -> Result<Response, WebError> {
    let prefs = preferences(&state, session.user.id).await?;
    let users = state.placement.accounts(AccountsMsg::ListUsers).await?;
    Ok(ActorsPage {
        frame: Frame::signed_in(&state, &session, &prefs, "actors"),
        rows: actor_rows_for(&state, &users),
    }
    .into_response())
}

/// `GET /admin/actors/rows`: the inspector's table body, polled by the page.
pub async fn actor_rows(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Response, WebError> {
    let users = state.placement.accounts(AccountsMsg::ListUsers).await?;
    Ok(ActorRows {
        rows: actor_rows_for(&state, &users),
    }
    .into_response())
}

/// `GET /healthz`: 200 once the actor system answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let probe = state
        .placement
        .accounts(|r| AccountsMsg::GetUser(UserId(uuid::Uuid::nil()), r))
        .await;
    match probe {
        Ok(_) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable", "detail": e.to_string() })),
        )
            .into_response(),
    }
}

/// Anything else.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return super::error::ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", uri.path()),
        )
        .into_response();
    }
    WebError::new(StatusCode::NOT_FOUND, "There is nothing at this address.").into_response()
}

/// A known path asked with a method it does not support.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{method} is not supported on {}", uri.path());
    if uri.path().starts_with("/api/") {
        return super::error::ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message)
            .into_response();
    }
    WebError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response()
}
