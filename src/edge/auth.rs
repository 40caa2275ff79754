//! Who is asking: browser sessions (an HttpOnly cookie naming a session held by the Accounts
//! actor), the local one-time login links, logout, and CSRF protection.
//!
//! CSRF: every page carries `<meta name="csrf-token">` (and htmx sends it as `X-CSRF-Token` on
//! every request); [`csrf_guard`] refuses any state-changing request made with a session cookie
//! whose header does not match that session's token. Cookies are also `SameSite=Lax`.

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use larder_actors::ActorError;
use larder_actors::accounts::{AccountsError, AccountsMsg, Session};
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

/// A signed-in caller of `/api`; others get a 401 problem.
pub struct ApiUser(pub Session);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match session_of(parts, state).await? {
            Some(s) => Ok(ApiUser(s)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign in first: no valid session",
            )),
        }
    }
}

/// Refuses state-changing requests that carry a session cookie but not its CSRF token.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method().is_safe() {
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

/// `GET /login/{token}`: burns a one-time login token and opens a session.
pub async fn login(
    State(state): State<AppState>,
    Path(token): Path<String>,
    jar: CookieJar,
) -> Response {
    let redeemed = state
        .placement
        .accounts(|r| AccountsMsg::RedeemLoginToken(token.clone(), r))
        .await;
    let mut res = match redeemed {
        Ok(Ok(new)) => {
            tracing::info!(user = %new.session.user.name, "signed in with a login link");
            let max_age =
                time::Duration::milliseconds(new.session.expires_at - new.session.created_at);
            let cookie = Cookie::build((SESSION_COOKIE, new.token))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(state.secure_cookies())
                .max_age(max_age)
                .build();
            (jar.add(cookie), Redirect::to("/query")).into_response()
        }
        Ok(Err(AccountsError::InvalidLoginToken)) => WebError::new(
            StatusCode::FORBIDDEN,
            "This login link is not valid: it was already used, has expired, or never existed. \
             Run `larder login-link` on the server for a fresh one.",
        )
        .into_response(),
        Ok(Err(e)) => {
            WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        Err(e) => WebError::from(e).into_response(),
    };
    // The token is in the URL: keep it out of caches and referrers.
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
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
