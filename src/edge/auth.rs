//! Who is asking: browser sessions (an HttpOnly cookie naming a session held by the Accounts
//! actor), the local one-time login links, logout, and CSRF protection.
//!
//! CSRF: every page carries `<meta name="csrf-token">` (and htmx sends it as `X-CSRF-Token` on
//! every request); [`csrf_guard`] refuses any state-changing request made with a session cookie
//! whose header does not match that session's token. Cookies are also `SameSite=Lax`.
//!
//! Login links: `GET /login/{token}` only shows who the link signs in; the person confirms with
//! a form that posts the token together with a nonce also set as a `SameSite=Strict` cookie.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use larder_actors::ActorError;
use larder_actors::accounts::{API_TOKEN_PREFIX, AccountsError, AccountsMsg, Session};
use larder_actors::oauth::OAuthMsg;
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::{ApiError, WebError};

pub const SESSION_COOKIE: &str = "larder_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The request's session, looked up once and cached in the request's extensions.
#[derive(Clone)]
struct CachedSession(Option<Session>);

async fn session_of(parts: &mut Parts, state: &AppState) -> Result<Option<Session>, ActorError> {
    if let Some(CachedSession(s)) = parts.extensions.get::<CachedSession>() {
        return Ok(s.clone());
    }
    let jar = CookieJar::from_headers(&parts.headers);
    let session = match jar.get(SESSION_COOKIE) {
        Some(cookie) => {
            let token = cookie.value().to_owned();
            state
                .placement
                .accounts(|r| AccountsMsg::Authenticate(token.clone(), r))
                .await?
        }
        None => None,
    };
    parts.extensions.insert(CachedSession(session.clone()));
    Ok(session)
}

/// True for requests made by htmx (they want fragments and `HX-*` headers, not pages).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// A signed-in person on a page or htmx route; others are sent to the landing page.
pub struct PageUser(pub Session);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match session_of(parts, state).await {
            Ok(Some(s)) => Ok(PageUser(s)),
            Ok(None) if is_htmx(&parts.headers) => {
                let mut res = StatusCode::UNAUTHORIZED.into_response();
                res.headers_mut()
                    .insert("HX-Redirect", HeaderValue::from_static("/"));
                Err(res)
            }
            Ok(None) => Err(Redirect::to("/").into_response()),
            Err(e) if is_htmx(&parts.headers) => Err(WebError::from(e).fragment().into_response()),
            Err(e) => Err(WebError::from(e).into_response()),
        }
    }
}

/// A signed-in admin (named in `auth.admins`).
pub struct AdminUser(pub Session);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let PageUser(session) = PageUser::from_request_parts(parts, state).await?;
        if state.is_admin(&session.user.name) {
            Ok(AdminUser(session))
        } else {
            Err(
                WebError::new(StatusCode::FORBIDDEN, "This page is for administrators.")
                    .into_response(),
            )
        }
    }
}

/// A signed-in caller of `/api`: a bearer token (a personal API token `lpat_…`, or an OAuth
/// access token: a JWT this node signed for the API's resource, whose grant still lives), which
/// takes precedence and needs no CSRF token, else the session cookie. Others get a 401 problem
/// with `WWW-Authenticate: Bearer` (RFC 6750) naming the resource metadata (RFC 9728), so
/// clients, MCP ones included, learn how to obtain a token.
pub struct ApiUser(pub Session);

/// A caller of `/api` acting as the person themselves (a session or a personal API token), not
/// an app connected through OAuth. Routes that mint credentials which would outlive an app's
/// grant (personal API tokens, S3 proxy credentials) take this, so that disconnecting an app
/// ends everything it holds.
pub struct ApiOwner(pub Session);

impl FromRequestParts<AppState> for ApiOwner {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ApiUser(session) = ApiUser::from_request_parts(parts, state).await?;
        if matches!(
            parts.extensions.get::<AuthVia>(),
            Some(AuthVia::OAuth { .. })
        ) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "apps connected through OAuth cannot create or manage credentials (personal API \
                 tokens, storage proxy credentials): everything they hold must end when they \
                 are disconnected",
            )
            .into_response());
        }
        Ok(ApiOwner(session))
    }
}

/// How an [`ApiUser`] authenticated, left in the request's extensions for handlers that say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVia {
    Session,
    ApiToken,
    OAuth { client_id: String },
}

/// The bearer token of a request, if it sends one.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A 401 with the RFC 6750 challenge; `invalid_token` when a bearer token was refused.
fn unauthorized(state: &AppState, detail: &str, invalid_token: bool) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    let error = if invalid_token {
        r#", error="invalid_token""#
    } else {
        ""
    };
    let challenge = format!(
        r#"Bearer realm="larder", resource_metadata="{}{}"{error}"#,
        state.base_url,
        super::oauth::API_RESOURCE_METADATA
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// The user behind an OAuth access token, if it verifies and its grant still lives.
async fn oauth_user(state: &AppState, token: &str) -> Result<(Session, String), Response> {
    let claims = state
        .verify_api_token(token)
        .map_err(|m| unauthorized(state, &m, true))?;
    let revoked = || {
        unauthorized(
            state,
            "the access token's grant was revoked or has lapsed",
            true,
        )
    };
    let family = claims.fid;
    let grant = state
        .placement
        .oauth(|r| OAuthMsg::LiveGrant(family, r))
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(revoked)?;
    if grant.user.to_string() != claims.sub || grant.client_id != claims.client_id {
        return Err(revoked());
    }
    let user_id = grant.user;
    let user = state
        .placement
        .accounts(|r| AccountsMsg::GetUser(user_id, r))
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(revoked)?;
    Ok((
        Session {
            user,
            csrf_token: String::new(),
            created_at: claims.iat.saturating_mul(1000),
            expires_at: claims.exp.saturating_mul(1000),
        },
        claims.client_id,
    ))
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(parts) {
            let token = token.to_owned();
            if !token.starts_with(API_TOKEN_PREFIX) {
                let (session, client_id) = oauth_user(state, &token).await?;
                parts.extensions.insert(AuthVia::OAuth { client_id });
                return Ok(ApiUser(session));
            }
            let found = state
                .placement
                .accounts(|r| AccountsMsg::AuthenticateApiToken(token.clone(), r))
                .await
                .map_err(|e| ApiError::from(e).into_response())?;
            return match found {
                Some((user, t)) => {
                    parts.extensions.insert(AuthVia::ApiToken);
                    Ok(ApiUser(Session {
                        user,
                        // Bearer requests are not exposed to CSRF: a browser never adds the
                        // header on its own.
                        csrf_token: String::new(),
                        created_at: t.created_at,
                        expires_at: t.expires_at.unwrap_or(i64::MAX),
                    }))
                }
                None => Err(unauthorized(
                    state,
                    "the bearer token is not valid: it was revoked, has expired, or never existed",
                    true,
                )),
            };
        }
        match session_of(parts, state).await {
            Ok(Some(s)) => {
                parts.extensions.insert(AuthVia::Session);
                Ok(ApiUser(s))
            }
            Ok(None) => Err(unauthorized(
                state,
                "sign in first, or send a personal API token or an OAuth access token as \
                 `Authorization: Bearer`",
                false,
            )),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

/// Routes authenticated by something other than the session cookie, which ignore it: the S3
/// proxy (SigV4) and the sign-in form (its own double-submit nonce).
fn uses_session(path: &str) -> bool {
    !(path == "/login"
        || path == "/s3"
        || path.starts_with("/s3/")
        || path.starts_with("/oauth/")
        // The consent form checks the session's CSRF token in a form field itself.
        || path == "/authorize")
}

/// Refuses state-changing requests that carry a session cookie but not its CSRF token.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method().is_safe() || !uses_session(req.uri().path()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let session = match session_of(&mut parts, &state).await {
        Ok(s) => s,
        Err(e) if parts.uri.path().starts_with("/api/") => {
            return ApiError::from(e).into_response();
        }
        Err(e) => return WebError::from(e).into_response(),
    };
    if let Some(session) = session {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(session.csrf_token.as_bytes())) {
            let message = "This request did not carry the page's CSRF token (X-CSRF-Token); reload the page and try again.";
            tracing::warn!(
                path = parts.uri.path(),
                "refused a request without a valid CSRF token"
            );
            return if parts.uri.path().starts_with("/api/") {
                ApiError::new(StatusCode::FORBIDDEN, message).into_response()
            } else if is_htmx(&parts.headers) {
                WebError::new(StatusCode::FORBIDDEN, message)
                    .fragment()
                    .into_response()
            } else {
                WebError::new(StatusCode::FORBIDDEN, message).into_response()
            };
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The pre-login cookie: a nonce the confirmation form must echo (double submit), so no other
/// site can post a login for its own account from this browser (login CSRF).
const LOGIN_NONCE_COOKIE: &str = "larder_login";

#[derive(Template, WebTemplate)]
#[template(path = "login_confirm.html")]
struct LoginConfirm {
    frame: super::pages::Frame,
    token: String,
    nonce: String,
    user: String,
    current: Option<String>,
}

fn invalid_link() -> Response {
    WebError::new(
        StatusCode::FORBIDDEN,
        "This login link is not valid: it was already used, has expired, or never existed. \
         Run `larder login-link` on the server for a fresh one.",
    )
    .into_response()
}

/// The token is in the URL: keep it out of caches and referrers.
pub(super) fn private(mut res: Response) -> Response {
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// `GET /login/{token}`: asks the person to confirm. Opening the link changes nothing, so link
/// previews and scanners cannot use it up, and nobody is signed in as someone else unawares.
pub async fn login_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    jar: CookieJar,
    parts: Parts,
) -> Response {
    let mut parts = parts;
    let user = match state
        .placement
        .accounts(|r| AccountsMsg::PeekLoginToken(token.clone(), r))
        .await
    {
        Ok(Some(user)) => user,
        Ok(None) => return private(invalid_link()),
        Err(e) => return WebError::from(e).into_response(),
    };
    let current = session_of(&mut parts, &state)
        .await
        .ok()
        .flatten()
        .map(|s| s.user.name);
    let nonce = new_nonce();
    let cookie = Cookie::build((LOGIN_NONCE_COOKIE, nonce.clone()))
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookies())
        .max_age(time::Duration::minutes(30))
        .build();
    let page = LoginConfirm {
        frame: super::pages::Frame::anonymous(&state),
        token,
        nonce,
        user: user.name,
        current,
    };
    private((jar.add(cookie), page).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    token: String,
    nonce: String,
}

/// `POST /login`: burns the one-time token and opens a session (replacing any other).
pub async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return WebError::new(StatusCode::BAD_REQUEST, "The sign-in form was incomplete.")
            .into_response();
    };
    let expected = jar
        .get(LOGIN_NONCE_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.nonce.as_bytes())) {
        return WebError::new(
            StatusCode::FORBIDDEN,
            "This sign-in did not come from Larder's own confirmation page. Open your login link again.",
        )
        .into_response();
    }
    let token = form.token;
    let redeemed = state
        .placement
        .accounts(|r| AccountsMsg::RedeemLoginToken(token.clone(), r))
        .await;
    let new = match redeemed {
        Ok(Ok(new)) => new,
        Ok(Err(AccountsError::InvalidLoginToken)) => return private(invalid_link()),
        Ok(Err(e)) => {
            return WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        Err(e) => return WebError::from(e).into_response(),
    };
    tracing::info!(user = %new.session.user.name, "signed in with a login link");
    let jar = jar.remove(Cookie::build(LOGIN_NONCE_COOKIE).path("/login"));
    open_session(&state, jar, new).await
}

/// The end of every sign-in (login link, OpenID): ends the browser's previous session, sets
/// the new session's cookie, and lands where [`take_return`] says.
pub(super) async fn open_session(
    state: &AppState,
    jar: CookieJar,
    new: larder_actors::accounts::NewSession,
) -> Response {
    // A browser holds one session: end the one it had.
    if let Some(old) = jar.get(SESSION_COOKIE) {
        let old = old.value().to_owned();
        let _ = state
            .placement
            .accounts(|r| AccountsMsg::EndSession(old.clone(), r))
            .await;
    }
    let max_age = time::Duration::milliseconds(new.session.expires_at - new.session.created_at);
    let cookie = Cookie::build((SESSION_COOKIE, new.token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies())
        .max_age(max_age)
        .build();
    let (jar, to) = take_return(jar.add(cookie));
    private((jar, Redirect::to(&to)).into_response())
}

/// Where a sign-in returns to when a page that needed it (an OAuth `/authorize`, say) sent the
/// person away to sign in: a path on this origin, kept in a short-lived cookie.
const RETURN_COOKIE: &str = "larder_return";

/// Remembers `path_and_query` (a local path) as where the next sign-in should land.
pub fn remember_return(jar: CookieJar, path_and_query: &str, secure: bool) -> CookieJar {
    if !is_local_path(path_and_query) {
        return jar;
    }
    jar.add(
        Cookie::build((RETURN_COOKIE, path_and_query.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(secure)
            .max_age(time::Duration::minutes(10))
            .build(),
    )
}

/// The remembered destination, if any, left in place (the landing page names the app waiting).
pub fn pending_return(jar: &CookieJar) -> Option<String> {
    jar.get(RETURN_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|p| is_local_path(p))
}

/// Where a sign-in that just succeeded should land (the remembered local path, else the query
/// page), with the cookie cleared. Every sign-in path (login link, OIDC) ends through this.
pub fn take_return(jar: CookieJar) -> (CookieJar, String) {
    let to = pending_return(&jar).unwrap_or_else(|| "/query".to_owned());
    (jar.remove(Cookie::build(RETURN_COOKIE).path("/")), to)
}

/// A path on this origin: `/…`, never `//host` or `/\host` (which browsers treat as another
/// origin), no control characters.
fn is_local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.chars().any(|c| c.is_control())
        && p.len() <= 4096
}

fn new_nonce() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, WebError> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        let token = cookie.value().to_owned();
        state
            .placement
            .accounts(|r| AccountsMsg::EndSession(token.clone(), r))
            .await?
            .map_err(|e| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    if is_htmx(&headers) {
        let mut res = (jar, StatusCode::NO_CONTENT).into_response();
        res.headers_mut()
            .insert("HX-Redirect", HeaderValue::from_static("/"));
        return Ok(res);
    }
    Ok((jar, Redirect::to("/")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_remembered_as_returns() {
        for good in ["/authorize?client_id=x&state=%2F%2F", "/query", "/"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "",
            "/a\nb",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
        let jar = remember_return(CookieJar::new(), "//evil.example/", false);
        assert_eq!(take_return(jar).1, "/query");
        let jar = remember_return(CookieJar::new(), "/authorize?x=1", false);
        assert_eq!(take_return(jar).1, "/authorize?x=1");
    }
}
