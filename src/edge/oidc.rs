//! Sign-in with OpenID Connect providers (`[[auth.oidc]]`): the authorization code flow with
//! PKCE (S256), a nonce and a state, ID token validation and userinfo, through `openidconnect`.
//!
//! `GET /auth/oidc/{provider}` makes the state, nonce and PKCE verifier, stores them in the
//! Accounts actor under the hash of a random value set as a short-lived `larder_oidc` cookie
//! (HttpOnly, SameSite=Lax, path `/auth/oidc`), and redirects to the provider.
//! `GET /auth/oidc/{provider}/callback` burns that pending sign-in (single use), checks the
//! state, exchanges the code with the verifier, validates the ID token (signature, issuer,
//! audience, expiry, nonce, `at_hash`), reads userinfo, and lets Accounts decide who signs in
//! (see `larder_actors::accounts::oidc`). Success opens a session like a login link does and
//! returns to `take_return`.
//!
//! Discovery happens at first use and is cached per provider; a provider that is down does not
//! stop the node, its button answers with an error page until it is back.
//!
//! Must not: log or send to the browser the client secret, codes, tokens or the verifier.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use larder_actors::accounts::{AccountsError, AccountsMsg, OidcSignIn, PendingOidcLogin};
use larder_actors::now_millis;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AsyncHttpClient, AuthType, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl,
    Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::auth::{open_session, private};
use super::error::WebError;
use crate::config::{AuthConfig, ConfigError, OidcProviderConfig};

/// The cookie binding a pending sign-in to the browser that started it.
const BINDING_COOKIE: &str = "larder_oidc";
const BINDING_PATH: &str = "/auth/oidc";
/// How long a started sign-in may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Longest answer read from a provider.
const MAX_PROVIDER_BODY: usize = 1 << 20;

/// The callback arrived without this browser's binding cookie: another browser (or site)
/// started it, or the cookie expired.
pub const NOT_STARTED_HERE: &str = "This sign-in could not be verified: it did not start in \
    this browser. Start again from Larder's sign-in page.";
/// The binding cookie names no pending sign-in: it was used already (a replayed callback) or
/// it expired.
pub const USED_OR_EXPIRED: &str = "This sign-in could not be verified: it was already used or \
    has expired. Start again from Larder's sign-in page.";
/// The callback's state is not the one this browser's sign-in started with (login CSRF).
pub const STATE_MISMATCH: &str = "This sign-in could not be verified: its state does not match \
    the sign-in this browser started. Start again from Larder's sign-in page.";

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The configured providers, their secrets (from the environment) and discovered metadata.
pub struct OidcProviders {
    providers: Vec<Provider>,
    http: Http,
}

struct Provider {
    config: OidcProviderConfig,
    secret: ClientSecret,
    /// Discovered at first use; retried on later uses while it fails.
    metadata: tokio::sync::Mutex<Option<CoreProviderMetadata>>,
}

/// A provider as the landing page shows it.
pub struct ProviderButton {
    pub name: String,
    pub label: String,
}

impl OidcProviders {
    /// The providers of `auth.oidc`; fails if a client secret's environment variable is unset.
    pub fn from_config(auth: &AuthConfig) -> Result<OidcProviders, ConfigError> {
        let providers = auth
            .oidc
            .iter()
            .map(|config| {
                Ok(Provider {
                    secret: ClientSecret::new(config.client_secret()?),
                    config: config.clone(),
                    metadata: tokio::sync::Mutex::new(None),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let client = reqwest::Client::builder()
            // Following redirects would turn an SSRF-safe fetch of a known URL into anything.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConfigError::Invalid {
                key: "auth.oidc",
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(OidcProviders {
            providers,
            http: Http(client),
        })
    }

    pub fn buttons(&self) -> Vec<ProviderButton> {
        self.providers
            .iter()
            .map(|p| ProviderButton {
                name: p.config.name.clone(),
                label: p.config.label().to_owned(),
            })
            .collect()
    }

    fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    /// A client for `provider`, discovering its metadata if that has not succeeded yet.
    async fn client(&self, provider: &Provider, base_url: &str) -> Result<Client, String> {
        let metadata = {
            let mut cached = provider.metadata.lock().await;
            match &*cached {
                Some(m) => m.clone(),
                None => {
                    let issuer = IssuerUrl::new(provider.config.issuer.clone())
                        .map_err(|e| format!("the issuer URL is not valid: {e}"))?;
                    let m = CoreProviderMetadata::discover_async(issuer, &self.http)
                        .await
                        .map_err(|e| format!("discovery failed: {}", chain(&e)))?;
                    *cached = Some(m.clone());
                    m
                }
            }
        };
        // client_secret_basic unless the provider only takes client_secret_post.
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|m| {
                m.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
        let redirect = RedirectUrl::new(format!(
            "{base_url}{BINDING_PATH}/{}/callback",
            provider.config.name
        ))
        .map_err(|e| format!("the redirect URI is not valid: {e}"))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.config.client_id.clone()),
            Some(provider.secret.clone()),
        )
        .set_redirect_uri(redirect);
        Ok(if post_only {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        })
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `openidconnect`'s HTTP over the reqwest client (no redirects, bounded bodies and time).
struct Http(reqwest::Client);

#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("the answer is larger than {MAX_PROVIDER_BODY} bytes")]
    TooLarge,
    #[error("{0}")]
    Http(#[from] openidconnect::http::Error),
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut res = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = openidconnect::http::Response::builder().status(res.status());
            for (name, value) in res.headers() {
                out = out.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await? {
                if body.len() + chunk.len() > MAX_PROVIDER_BODY {
                    return Err(HttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(out.body(body)?)
        })
    }
}

fn no_such_provider(name: &str) -> Response {
    WebError::new(
        StatusCode::NOT_FOUND,
        format!("There is no sign-in provider named \"{name}\" on this node."),
    )
    .into_response()
}

fn provider_failed(provider: &Provider, what: &str) -> Response {
    tracing::warn!(provider = %provider.config.name, error = %what, "OpenID sign-in failed at the provider");
    WebError::new(
        StatusCode::BAD_GATEWAY,
        format!(
            "Signing in with {} failed: {what}. Try again in a moment.",
            provider.config.label()
        ),
    )
    .into_response()
}

fn refused(message: &str) -> Response {
    private(WebError::new(StatusCode::FORBIDDEN, message).into_response())
}

fn new_binding() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `GET /auth/oidc/{provider}`: starts a sign-in and sends the browser to the provider.
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
) -> Response {
    let Some(provider) = state.oidc.get(&name) else {
        return no_such_provider(&name);
    };
    let client = match state.oidc.client(provider, &state.base_url).await {
        Ok(c) => c,
        Err(e) => return provider_failed(provider, &e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in &provider.config.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let ttl = i64::try_from(PENDING_TTL.as_millis()).unwrap_or(i64::MAX);
    let pending = PendingOidcLogin {
        provider: name,
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        expires_at: now_millis() + ttl,
    };
    let binding = new_binding();
    let stored = state
        .placement
        .accounts(|r| AccountsMsg::BeginOidcLogin(binding.clone(), pending.clone(), r))
        .await;
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        Err(e) => return WebError::from(e).into_response(),
    }
    let cookie = Cookie::build((BINDING_COOKIE, binding))
        .path(BINDING_PATH)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies())
        .max_age(time::Duration::seconds(PENDING_TTL.as_secs() as i64))
        .build();
    private((jar.add(cookie), Redirect::to(url.as_str())).into_response())
}

/// What a provider sends back (RFC 6749 §4.1.2, RFC 9207's `iss`).
#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/{provider}/callback`: finishes a sign-in (see the module doc).
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<CallbackParams>, QueryRejection>,
    jar: CookieJar,
) -> Response {
    let Some(provider) = state.oidc.get(&name) else {
        return no_such_provider(&name);
    };
    let Some(binding) = jar.get(BINDING_COOKIE).map(|c| c.value().to_owned()) else {
        tracing::warn!(provider = %name, "OpenID callback without this browser's binding cookie");
        return refused(NOT_STARTED_HERE);
    };
    let jar = jar.remove(Cookie::build(BINDING_COOKIE).path(BINDING_PATH));
    // Burned here, whatever happens next: a callback URL works at most once.
    let pending = match state
        .placement
        .accounts(|r| AccountsMsg::TakeOidcLogin(binding.clone(), r))
        .await
    {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => {
            tracing::warn!(provider = %name, "OpenID callback for a used or expired sign-in");
            return (jar, refused(USED_OR_EXPIRED)).into_response();
        }
        Ok(Err(e)) => {
            return WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        Err(e) => return WebError::from(e).into_response(),
    };
    let Ok(Query(params)) = params else {
        return (jar, refused(STATE_MISMATCH)).into_response();
    };
    let sent_state = params.state.as_deref().unwrap_or_default();
    if pending.provider != name
        || !bool::from(sent_state.as_bytes().ct_eq(pending.state.as_bytes()))
    {
        tracing::warn!(provider = %name, "OpenID callback whose state does not match (login CSRF?)");
        return (jar, refused(STATE_MISMATCH)).into_response();
    }
    if let Some(error) = &params.error {
        let detail = params
            .error_description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return (
            jar,
            refused(&format!(
                "{} did not sign you in: {error}{detail}.",
                provider.config.label()
            )),
        )
            .into_response();
    }
    // RFC 9207: a provider that names itself must be the one this sign-in went to (mix-up).
    if params
        .iss
        .as_deref()
        .is_some_and(|iss| iss != provider.config.issuer)
    {
        return (
            jar,
            refused("This sign-in could not be verified: the answer came from another provider."),
        )
            .into_response();
    }
    let Some(code) = params.code else {
        return (
            jar,
            WebError::new(
                StatusCode::BAD_REQUEST,
                "The provider's answer carried no authorization code.",
            )
            .into_response(),
        )
            .into_response();
    };
    let person = match verify(&state, provider, code, pending).await {
        Ok(p) => p,
        Err(Failure::Provider(e)) => return (jar, provider_failed(provider, &e)).into_response(),
        Err(Failure::Invalid(e)) => {
            tracing::warn!(provider = %name, error = %e, "OpenID ID token refused");
            return (
                jar,
                refused(&format!(
                    "This sign-in could not be verified: the provider's ID token is not valid ({e})."
                )),
            )
                .into_response();
        }
    };
    let request = OidcSignIn {
        issuer: provider.config.issuer.clone(),
        subject: person.subject,
        email: person.email,
        email_verified: person.email_verified,
        link_verified_email: state.config.auth.link_verified_email,
    };
    let signed_in = match state
        .placement
        .accounts(|r| AccountsMsg::OidcSignIn(request.clone(), r))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e @ (AccountsError::NotOnAllowlist(_) | AccountsError::Invalid(_)))) => {
            tracing::info!(provider = %name, reason = %e, "OpenID sign-up refused");
            return (jar, refused(&format!("You cannot sign up here: {e}."))).into_response();
        }
        Ok(Err(e)) => {
            return WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        Err(e) => return WebError::from(e).into_response(),
    };
    tracing::info!(
        provider = %name,
        user = %signed_in.session.session.user.name,
        how = ?signed_in.how,
        "signed in with OpenID Connect"
    );
    open_session(&state, jar, signed_in.session).await
}

/// Who the provider vouched for.
struct Person {
    subject: String,
    email: Option<String>,
    email_verified: bool,
}

enum Failure {
    /// The provider could not be reached or refused (a 502).
    Provider(String),
    /// What it sent does not check out (a 403).
    Invalid(String),
}

/// Exchanges the code, validates the ID token, reads userinfo.
async fn verify(
    state: &AppState,
    provider: &Provider,
    code: String,
    pending: PendingOidcLogin,
) -> Result<Person, Failure> {
    let client = state
        .oidc
        .client(provider, &state.base_url)
        .await
        .map_err(Failure::Provider)?;
    let http = &state.oidc.http;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| Failure::Provider(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(http)
        .await
        .map_err(|e| Failure::Provider(format!("the code exchange failed: {}", chain(&e))))?;
    let id_token = token
        .id_token()
        .ok_or_else(|| Failure::Invalid("the provider sent no ID token".into()))?;
    let verifier = client.id_token_verifier();
    let claims = match id_token.claims(&verifier, &Nonce::new(pending.nonce)) {
        Ok(claims) => claims,
        Err(e) => {
            // The provider may have rotated its signing keys: discover (and fetch its JWKS)
            // afresh next time rather than refusing everyone until a restart.
            provider.metadata.lock().await.take();
            return Err(Failure::Invalid(chain(&e)));
        }
    };
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(|e| Failure::Invalid(chain(&e)))?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|e| Failure::Invalid(chain(&e)))?;
        let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
            .map_err(|e| Failure::Invalid(chain(&e)))?;
        if actual != *expected {
            return Err(Failure::Invalid(
                "the access token hash does not match".into(),
            ));
        }
    }
    let subject = claims.subject().clone();
    let mut email = claims.email().map(|e| e.as_str().to_owned());
    let mut email_verified = claims.email_verified().unwrap_or(false);
    if let Ok(request) = client.user_info(token.access_token().clone(), Some(subject.clone())) {
        let info: CoreUserInfoClaims = request
            .request_async(http)
            .await
            .map_err(|e| Failure::Provider(format!("userinfo failed: {}", chain(&e))))?;
        if let Some(e) = info.email() {
            email = Some(e.as_str().to_owned());
            email_verified = info.email_verified().unwrap_or(false);
        }
    }
    Ok(Person {
        subject: subject.as_str().to_owned(),
        email,
        email_verified,
    })
}
