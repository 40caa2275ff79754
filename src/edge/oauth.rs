//! Larder as an OAuth 2.1 authorization server, the way MCP clients expect one: metadata
//! (RFC 8414) and protected-resource metadata (RFC 9728), dynamic client registration
//! (RFC 7591), `/authorize` with a consent page and PKCE S256, `/oauth/token` (authorization
//! code and refresh token grants), revocation (RFC 7009). Access tokens are EdDSA JWTs bound to
//! a resource (RFC 8707); refresh tokens are opaque and rotate (the OAuth actor keeps them).
//!
//! The issuer is the node's public base URL. The protected resources are `<base>/api` (the JSON
//! API; later the MCP endpoint joins it) and `<base>` as a whole.
//!
//! Errors follow each surface: JSON `{error, error_description}` from the token, registration and
//! revocation endpoints; from `/authorize`, a redirect carrying `error` back to the client once the
//! client and redirect URI are known good, and an HTML page before that (never redirecting to an
//! unverified URI).
//!
//! Must not: redirect anywhere but a registered redirect URI; accept `plain` PKCE; hand out a
//! token for a resource this server does not host.

pub mod jwt;

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use base64::Engine as _;
use larder_actors::oauth::{
    self, CodeRedemption, CodeRequest, Issued, OAuthError, OAuthMsg, RefreshRequest, Registration,
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::auth::{PageUser, remember_return};
use super::error::WebError;
use super::pages::{Frame, preferences};

/// The one scope Larder grants: everything the person can do through the API.
pub const SCOPE: &str = "larder";

/// The path of the API's protected-resource metadata, named in every 401 from `/api`.
pub const API_RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource/api";

impl AppState {
    /// The issuer identifier: the node's public base URL, exactly as metadata states it.
    pub fn issuer(&self) -> &str {
        &self.base_url
    }

    fn api_resource(&self) -> String {
        format!("{}/api", self.base_url)
    }

    /// The RFC 8707 resource a client asked for, in canonical form, if this server hosts it.
    fn canonical_resource(&self, requested: &str) -> Option<String> {
        let r = requested.strip_suffix('/').unwrap_or(requested);
        (r == self.api_resource() || r == &*self.base_url).then(|| r.to_owned())
    }

    /// The claims of an access token this node signed for `/api` (audience `<base>/api` or
    /// `<base>`), not expired; else why not.
    pub fn verify_api_token(&self, token: &str) -> Result<jwt::AccessClaims, String> {
        let api = self.api_resource();
        self.access_tokens.verify(token, &[&api, &self.base_url])
    }
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(State(state): State<AppState>) -> Response {
    let base = &state.base_url;
    public_json(json!({
        "issuer": state.issuer(),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "registration_endpoint": format!("{base}/oauth/register"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [SCOPE],
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": format!("{base}/api/docs"),
    }))
}

/// `GET /.well-known/oauth-protected-resource` and `…/api` (RFC 9728): the resource named by
/// the path, and who issues its tokens.
pub async fn protected_resource(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    let resource = match uri
        .path()
        .strip_prefix("/.well-known/oauth-protected-resource")
    {
        Some("/api") => state.api_resource(),
        _ => state.base_url.to_string(),
    };
    public_json(json!({
        "resource": resource,
        "authorization_servers": [state.issuer()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE],
        "resource_name": "Larder",
        "resource_documentation": format!("{}/api/docs", state.base_url),
    }))
}

/// Metadata anyone may read (and cache briefly), from any origin.
fn public_json(body: serde_json::Value) -> Response {
    let mut res = Json(body).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// An OAuth error answer: `{error, error_description}` (RFC 6749 §5.2), never cached.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({ "error": code, "error_description": description });
    (status, no_store(), Json(body)).into_response()
}

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

fn actor_error(e: larder_actors::ActorError) -> Response {
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        &e.to_string(),
    )
}

fn refused(e: &OAuthError) -> Response {
    let status = match e {
        OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        OAuthError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OAuthError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    oauth_error(status, e.code(), &e.to_string())
}

/// `POST /oauth/register` (RFC 7591): open registration of public clients.
pub async fn register(
    State(state): State<AppState>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the registration must be a JSON object (Content-Type: application/json)",
        );
    };
    let reg = match parse_registration(&body) {
        Ok(r) => r,
        Err(m) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", &m),
    };
    let client = match state
        .placement
        .oauth(|r| OAuthMsg::Register(reg.clone(), r))
        .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return refused(&e),
        Err(e) => return actor_error(e),
    };
    tracing::info!(client = %client.client_id, name = ?client.client_name, "registered an OAuth client");
    let mut out = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at / 1000,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    if let Some(n) = client.client_name {
        out["client_name"] = json!(n);
    }
    if let Some(u) = client.client_uri {
        out["client_uri"] = json!(u);
    }
    (StatusCode::CREATED, no_store(), Json(out)).into_response()
}

/// Reads the fields Larder uses, with a precise complaint about a wrongly typed one. Other
/// metadata (logo_uri, contacts, …) is accepted and ignored, as RFC 7591 allows.
fn parse_registration(body: &serde_json::Value) -> Result<Registration, String> {
    let obj = body
        .as_object()
        .ok_or("the registration must be a JSON object")?;
    let string = |k: &str| -> Result<Option<String>, String> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{k} must be a string")),
        }
    };
    let strings = |k: &str| -> Result<Option<Vec<String>>, String> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("{k} must be an array of strings")),
            Some(_) => Err(format!("{k} must be an array of strings")),
        }
    };
    Ok(Registration {
        redirect_uris: strings("redirect_uris")?.unwrap_or_default(),
        client_name: string("client_name")?,
        client_uri: string("client_uri")?,
        token_endpoint_auth_method: string("token_endpoint_auth_method")?,
        grant_types: strings("grant_types")?,
        response_types: strings("response_types")?,
    })
}

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636, RFC 8707).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
    // `scope` is not read: Larder grants its one scope ([`SCOPE`]) whatever is asked, and says
    // so in the token response (RFC 6749 §3.3).
    state: Option<String>,
}

/// A request checked far enough to answer by redirect: the client exists and the redirect URI
/// is one it registered.
struct Verified {
    client: oauth::Client,
    redirect_uri: String,
    state: Option<String>,
}

/// Checks the client and redirect URI; failures are pages, never redirects (RFC 6749 §4.1.2.1).
async fn verify_client(state: &AppState, p: &AuthorizeParams) -> Result<Verified, Response> {
    let Some(client_id) = p.client_id.clone().filter(|c| !c.is_empty()) else {
        return Err(authorize_page_error(
            "The request names no client (client_id is missing).",
        ));
    };
    let client = match state
        .placement
        .oauth(|r| OAuthMsg::GetClient(client_id.clone(), r))
        .await
    {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(authorize_page_error(
                "This app is not registered with Larder (unknown client_id). It should register \
                 itself again.",
            ));
        }
        Err(e) => return Err(WebError::from(e).into_response()),
    };
    let redirect_uri = match &p.redirect_uri {
        Some(r) => r.clone(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(authorize_page_error(
                "The request names no redirect_uri, and the app registered several.",
            ));
        }
    };
    if !client
        .redirect_uris
        .iter()
        .any(|r| oauth::redirect_uri_matches(r, &redirect_uri))
    {
        return Err(authorize_page_error(
            "The app asked to be sent back to an address it did not register (redirect_uri \
             mismatch), so Larder will not send you there.",
        ));
    }
    Ok(Verified {
        client,
        redirect_uri,
        state: p.state.clone(),
    })
}

fn authorize_page_error(message: &str) -> Response {
    WebError::new(StatusCode::BAD_REQUEST, message).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_refused.html")]
struct Refused {
    error: String,
    description: String,
    back: String,
    destination: String,
}

impl Verified {
    /// The client's redirect URI with these parameters, plus `state` and `iss`.
    fn back_url(&self, issuer: &str, params: &[(&str, &str)]) -> Option<url::Url> {
        let mut url = url::Url::parse(&self.redirect_uri).ok()?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = &self.state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", issuer);
        }
        Some(url)
    }

    /// Redirects back to the client (only once the person has seen the consent page).
    fn redirect(&self, issuer: &str, params: &[(&str, &str)]) -> Response {
        let Some(url) = self.back_url(issuer, params) else {
            return authorize_page_error("The app's redirect_uri is not a URL.");
        };
        let mut res = Redirect::to(url.as_str()).into_response();
        res.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        res
    }

    fn error(&self, issuer: &str, code: &str, description: &str) -> Response {
        self.redirect(
            issuer,
            &[("error", code), ("error_description", description)],
        )
    }

    /// A refused request, before the person has consented to anything: a page with a link
    /// back to the app, never an automatic redirect. Registration is open, so an automatic
    /// one would make `/authorize` an open redirector (RFC 9700 §4.11.2).
    fn error_page(&self, issuer: &str, code: &str, description: &str) -> Response {
        let params = [("error", code), ("error_description", description)];
        let Some(back) = self.back_url(issuer, &params) else {
            return authorize_page_error("The app's redirect_uri is not a URL.");
        };
        let page = Refused {
            error: code.to_owned(),
            description: description.to_owned(),
            destination: destination_of(&self.redirect_uri),
            back: back.into(),
        };
        let mut res = (StatusCode::BAD_REQUEST, page).into_response();
        res.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        res
    }
}

/// Where a redirect URI sends the browser, as the person should read it: its origin.
fn destination_of(redirect_uri: &str) -> String {
    url::Url::parse(redirect_uri)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// What the consent form carries back (all re-checked on submit).
struct Checked {
    challenge: String,
    resource: String,
    scope: String,
}

/// Checks the rest of the request; a failure is the `(error, error_description)` to redirect
/// to the client.
fn check_request(
    state: &AppState,
    p: &AuthorizeParams,
) -> Result<Checked, (&'static str, &'static str)> {
    if p.response_type.as_deref() != Some("code") {
        return Err((
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let Some(challenge) = p.code_challenge.clone().filter(|c| !c.is_empty()) else {
        return Err((
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    if p.code_challenge_method.as_deref() != Some("S256") {
        return Err((
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted)",
        ));
    }
    if !oauth::valid_challenge(&challenge) {
        return Err((
            "invalid_request",
            "code_challenge must be 43 base64url characters (an S256 challenge)",
        ));
    }
    let resource = match p.resource.as_deref() {
        None | Some("") => state.api_resource(),
        Some(r) => state.canonical_resource(r).ok_or((
            "invalid_target",
            "resource is not a resource this server hosts",
        ))?,
    };
    Ok(Checked {
        challenge,
        resource,
        scope: SCOPE.to_owned(),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_consent.html")]
struct Consent {
    frame: Frame,
    client_name: String,
    client_id: String,
    /// Where the browser goes next: the redirect URI's origin.
    destination: String,
    redirect_uri: String,
    code_challenge: String,
    resource: String,
    state: String,
}

/// `GET /authorize`: sends the person to sign in first if needed, then asks for consent.
pub async fn authorize(
    State(state): State<AppState>,
    user: Option<PageUser>,
    jar: CookieJar,
    RawQuery(raw): RawQuery,
    params: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return authorize_page_error("The authorization request's parameters are malformed.");
    };
    let v = match verify_client(&state, &p).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let checked = match check_request(&state, &p) {
        Ok(c) => c,
        Err((code, description)) => return v.error_page(state.issuer(), code, description),
    };
    let Some(PageUser(session)) = user else {
        // Back here after signing in, by whichever sign-in the node offers.
        let back = format!("/authorize?{}", raw.unwrap_or_default());
        let jar = remember_return(jar, &back, state.secure_cookies());
        return (jar, Redirect::to("/")).into_response();
    };
    let prefs = match preferences(&state, session.user.id).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let destination = destination_of(&v.redirect_uri);
    let page = Consent {
        frame: Frame::signed_in(&state, &session, &prefs, ""),
        client_name: v
            .client
            .client_name
            .clone()
            .unwrap_or_else(|| "An unnamed app".to_owned()),
        client_id: v.client.client_id.clone(),
        destination: destination.clone(),
        redirect_uri: v.redirect_uri.clone(),
        code_challenge: checked.challenge,
        resource: checked.resource,
        state: v.state.clone().unwrap_or_default(),
    };
    let mut res = page.into_response();
    // The form's answer redirects to the app: allow exactly that origin as a form target.
    let csp = super::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {destination}"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The consent form.
#[derive(Debug, Deserialize)]
pub struct Decision {
    csrf: String,
    decision: String,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    resource: String,
    #[serde(default)]
    state: String,
}

/// `POST /authorize`: the person allowed or denied; back to the app with a code or an error.
pub async fn decide(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    form: Result<Form<Decision>, FormRejection>,
) -> Response {
    let Ok(Form(d)) = form else {
        return authorize_page_error("The consent form was incomplete.");
    };
    // The form carries the session's CSRF token (it is a plain form post, not htmx).
    if !bool::from(d.csrf.as_bytes().ct_eq(session.csrf_token.as_bytes())) {
        return WebError::new(
            StatusCode::FORBIDDEN,
            "This consent did not come from Larder's own page. Start again from the app.",
        )
        .into_response();
    }
    let p = AuthorizeParams {
        client_id: Some(d.client_id),
        redirect_uri: Some(d.redirect_uri),
        response_type: Some("code".into()),
        code_challenge: Some(d.code_challenge),
        code_challenge_method: Some("S256".into()),
        resource: Some(d.resource),
        state: (!d.state.is_empty()).then_some(d.state),
    };
    let v = match verify_client(&state, &p).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let checked = match check_request(&state, &p) {
        Ok(c) => c,
        Err((code, description)) => return v.error(state.issuer(), code, description),
    };
    let issuer = state.issuer();
    if d.decision != "allow" {
        return v.error(
            issuer,
            "access_denied",
            "the person declined to connect this app",
        );
    }
    let req = CodeRequest {
        client_id: v.client.client_id.clone(),
        user: session.user.id,
        redirect_uri: v.redirect_uri.clone(),
        code_challenge: checked.challenge,
        resource: checked.resource,
        scope: checked.scope,
    };
    match state
        .placement
        .oauth(|r| OAuthMsg::IssueCode(req.clone(), r))
        .await
    {
        Ok(Ok(code)) => {
            tracing::info!(user = %session.user.name, client = %v.client.client_id, "authorized an OAuth client");
            let mut res = v.redirect(issuer, &[("code", &code)]);
            *res.status_mut() = StatusCode::SEE_OTHER;
            res
        }
        Ok(Err(e)) => v.error(issuer, e.code(), &e.to_string()),
        Err(e) => v.error(issuer, "temporarily_unavailable", &e.to_string()),
    }
}

/// The client id of a token or revocation request: the form's `client_id`, or the user name
/// of HTTP Basic authentication (clients that send it that way, with an empty password).
fn client_id_of(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<String> {
    if let Some(id) = form.get("client_id").filter(|c| !c.is_empty()) {
        return Some(id.clone());
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, creds) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, _) = decoded.split_once(':')?;
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!id.is_empty()).then_some(id)
}

/// A token or revocation request's form, each parameter at most once (RFC 6749 §3.2); else
/// the `invalid_request` description.
fn single_valued(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
    what: &str,
) -> Result<HashMap<String, String>, String> {
    let Ok(Form(pairs)) = form else {
        return Err(format!(
            "the {what} request must be a form (application/x-www-form-urlencoded)"
        ));
    };
    let mut form = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if form.contains_key(&k) {
            return Err(format!("the parameter {k} appears more than once"));
        }
        form.insert(k, v);
    }
    Ok(form)
}

/// `invalid_client`, with the `WWW-Authenticate` challenge RFC 6749 §5.2 asks for when the
/// client tried HTTP Basic.
fn invalid_client(headers: &HeaderMap, description: &str) -> Response {
    let mut res = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
    if basic {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="larder""#),
        );
    }
    res
}

/// `POST /oauth/token`: the authorization_code and refresh_token grants.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = match single_valued(form, "token") {
        Ok(f) => f,
        Err(m) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &m),
    };
    let Some(client_id) = client_id_of(&headers, &form) else {
        return invalid_client(&headers, "client_id is required");
    };
    let field = |k: &str| form.get(k).filter(|v| !v.is_empty()).cloned();
    let resource = match field("resource") {
        None => None,
        Some(r) => match state.canonical_resource(&r) {
            Some(r) => Some(r),
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource is not a resource this server hosts",
                );
            }
        },
    };
    let issued = match field("grant_type").as_deref() {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri), Some(code_verifier)) =
                (field("code"), field("redirect_uri"), field("code_verifier"))
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code, redirect_uri and code_verifier are required",
                );
            };
            let req = CodeRedemption {
                code,
                client_id,
                redirect_uri,
                code_verifier,
                resource,
            };
            state
                .placement
                .oauth(|r| OAuthMsg::RedeemCode(req.clone(), r))
                .await
        }
        Some("refresh_token") => {
            let Some(refresh_token) = field("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            let req = RefreshRequest {
                refresh_token,
                client_id,
                resource,
            };
            state
                .placement
                .oauth(|r| OAuthMsg::Refresh(req.clone(), r))
                .await
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!(
                    "grant_type \"{other}\" is not supported: use authorization_code or refresh_token"
                ),
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    };
    match issued {
        Ok(Ok(issued)) => token_response(&state, &issued),
        Ok(Err(OAuthError::InvalidClient(m))) => invalid_client(&headers, &m),
        Ok(Err(e)) => refused(&e),
        Err(e) => actor_error(e),
    }
}

fn token_response(state: &AppState, issued: &Issued) -> Response {
    match state.access_tokens.mint(issued) {
        Ok(access) => (
            no_store(),
            Json(json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": state.access_tokens.ttl_secs(),
                "refresh_token": issued.refresh_token,
                "scope": issued.scope,
            })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not sign an access token");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not sign the access token",
            )
        }
    }
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token or an access token; either ends the whole
/// grant. Unknown or foreign tokens are answered 200 and change nothing, as the RFC says.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = match single_valued(form, "revocation") {
        Ok(f) => f,
        Err(m) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &m),
    };
    let Some(token) = form.get("token").filter(|t| !t.is_empty()).cloned() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let Some(client_id) = client_id_of(&headers, &form) else {
        return invalid_client(&headers, "client_id is required");
    };
    let result = match state.verify_api_token(&token) {
        Ok(claims) => {
            let family = claims.fid;
            state
                .placement
                .oauth(|r| OAuthMsg::RevokeFamilyOfClient(family, client_id.clone(), r))
                .await
        }
        Err(_) => {
            state
                .placement
                .oauth(|r| OAuthMsg::RevokeRefreshToken(token.clone(), client_id.clone(), r))
                .await
        }
    };
    match result {
        Ok(Ok(())) => (StatusCode::OK, no_store()).into_response(),
        Ok(Err(e)) => refused(&e),
        Err(e) => actor_error(e),
    }
}
