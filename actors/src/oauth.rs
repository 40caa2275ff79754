//! `OAuth`: the node-global state of Larder's OAuth 2.1 authorization server (the one MCP
//! clients use): registered clients (RFC 7591), single-use authorization codes bound to a PKCE
//! challenge, client and redirect URI, and grants — one per consent — with their rotating
//! refresh tokens.
//!
//! A grant is a token *family*: the code's first redemption creates it, every refresh rotates
//! its refresh token, and presenting anything already used (a code, an old refresh token)
//! revokes the whole family, so a stolen token is worth one use at most. Access tokens are
//! JWTs the edge signs; they name their family (`fid`), and a request is only served while
//! that family lives here, so revoking a grant ends its access tokens at once too.
//!
//! Secrets (codes, refresh tokens) are handed out once; only their SHA-256 is stored.
//!
//! Must not: know about HTTP, URLs of this server, or signing keys (the edge owns those).

use std::collections::HashMap;

use base64::Engine as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::{UnixMillis, UserId, now_millis};
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::secret::{hash_secret, new_secret, strip_keys, ttl_millis};
use crate::store::{Changes, Partition};
use crate::supervision::reply_or_reload;

/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Most clients registered at once. Registration is open to anyone (as RFC 7591 intends for
/// MCP), so registrations never used are swept after [`UNUSED_CLIENT_TTL_MS`], clients left
/// without a grant after [`IDLE_CLIENT_TTL_MS`], and a full table makes room by dropping the
/// oldest never-used registration.
pub const MAX_CLIENTS: usize = 10_000;
const UNUSED_CLIENT_TTL_MS: i64 = 24 * 3600 * 1000;
const IDLE_CLIENT_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// A registered client. Public clients only (`token_endpoint_auth_method: none`): MCP clients
/// are native or browser apps that cannot keep a secret; PKCE protects their codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub created_at: UnixMillis,
    /// Set once the client has been granted access by someone (unused ones are swept).
    pub used: bool,
    /// When someone last granted it access.
    #[serde(default)]
    pub last_used_at: UnixMillis,
}

/// A registration request's metadata (RFC 7591 §2), as the edge parsed it from JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
}

/// What the person consented to, to be turned into a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRequest {
    pub client_id: String,
    pub user: UserId,
    pub redirect_uri: String,
    /// The S256 PKCE challenge (base64url of the verifier's SHA-256).
    pub code_challenge: String,
    /// The RFC 8707 resource the tokens are for (checked by the edge).
    pub resource: String,
    pub scope: String,
}

/// A code presented at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRedemption {
    pub code: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_verifier: String,
    /// If the client names a resource again, it must be the one consented to.
    pub resource: Option<String>,
}

/// A refresh token presented at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
    pub client_id: String,
    pub resource: Option<String>,
}

/// A grant's tokens just issued. `refresh_token` exists only in this reply; the edge signs an
/// access token for `family`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub family: uuid::Uuid,
    pub user: UserId,
    pub client_id: String,
    pub resource: String,
    pub scope: String,
    pub refresh_token: String,
    pub refresh_expires_at: UnixMillis,
}

/// One consent: a client's access to a user's data, as the connected-clients page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: uuid::Uuid,
    pub user: UserId,
    pub client_id: String,
    pub client_name: Option<String>,
    pub resource: String,
    pub scope: String,
    pub created_at: UnixMillis,
    pub last_used_at: UnixMillis,
    /// When the current refresh token lapses (each rotation moves it on).
    pub expires_at: UnixMillis,
}

/// Why a request was refused; each maps to an OAuth error code ([`OAuthError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidRedirectUri(String),
    #[error("{0}")]
    InvalidClientMetadata(String),
    #[error("{0}")]
    InvalidTarget(String),
    #[error("{0}")]
    TemporarilyUnavailable(String),
    #[error("could not store the change: {0}")]
    Storage(String),
}

impl OAuthError {
    /// The `error` value of RFC 6749 §5.2 / RFC 7591 §3.2.2.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            OAuthError::InvalidClientMetadata(_) => "invalid_client_metadata",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::TemporarilyUnavailable(_) => "temporarily_unavailable",
            OAuthError::Storage(_) => "server_error",
        }
    }
}

/// Messages to [`OAuth`]. Serializable: any node's edge may send them.
#[derive(RactorClusterMessage)]
pub enum OAuthMsg {
    #[rpc]
    Register(Registration, RpcReplyPort<Result<Client, OAuthError>>),
    #[rpc]
    GetClient(String, RpcReplyPort<Option<Client>>),
    /// A single-use code for what the person just consented to.
    #[rpc]
    IssueCode(CodeRequest, RpcReplyPort<Result<String, OAuthError>>),
    #[rpc]
    RedeemCode(CodeRedemption, RpcReplyPort<Result<Issued, OAuthError>>),
    #[rpc]
    Refresh(RefreshRequest, RpcReplyPort<Result<Issued, OAuthError>>),
    /// RFC 7009 for a refresh token: revokes its family if it belongs to `client_id`.
    /// Unknown tokens are not an error.
    #[rpc]
    RevokeRefreshToken(String, String, RpcReplyPort<Result<(), OAuthError>>),
    /// Revokes a family if it belongs to the client (an access token presented to RFC 7009).
    #[rpc]
    RevokeFamilyOfClient(uuid::Uuid, String, RpcReplyPort<Result<(), OAuthError>>),
    /// The live grant behind an access token's family, if it still lives.
    #[rpc]
    LiveGrant(uuid::Uuid, RpcReplyPort<Option<Grant>>),
    /// A user's live grants, newest first.
    #[rpc]
    ListGrants(UserId, RpcReplyPort<Vec<Grant>>),
    /// The user revokes one of their grants; `Ok(false)` if they have no such grant.
    #[rpc]
    RevokeGrant(UserId, uuid::Uuid, RpcReplyPort<Result<bool, OAuthError>>),
    /// Drops expired codes, tokens, grants and unused clients (sent by the actor itself).
    Sweep,
    /// Panics inside the handler (fault injection; see `LibraryMsg::InjectPanic`).
    InjectPanic,
}

/// Lifetimes of what the authorization server hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthConfig {
    pub code_ttl: std::time::Duration,
    pub refresh_ttl: std::time::Duration,
    /// Most clients registered at once ([`MAX_CLIENTS`] unless a test says otherwise).
    pub max_clients: usize,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            code_ttl: std::time::Duration::from_secs(300),
            refresh_ttl: std::time::Duration::from_secs(30 * 24 * 3600),
            max_clients: MAX_CLIENTS,
        }
    }
}

pub struct OAuth;

pub struct OAuthArgs {
    pub partition: Partition,
    pub roster: Roster,
    pub config: OAuthConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCode {
    request: CodeRequest,
    expires_at: UnixMillis,
    /// The family its first redemption created: a second redemption revokes it.
    redeemed: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRefresh {
    family: uuid::Uuid,
    expires_at: UnixMillis,
    /// Rotated away: presenting it again revokes the family.
    used: bool,
}

pub struct OAuthState {
    key: ActorKey,
    partition: Partition,
    roster: Roster,
    config: OAuthConfig,
    clients: HashMap<String, Client>,
    /// Keyed by code hash.
    codes: HashMap<String, StoredCode>,
    /// Keyed by refresh-token hash.
    refresh: HashMap<String, StoredRefresh>,
    grants: HashMap<uuid::Uuid, Grant>,
}

impl Actor for OAuth {
    type Msg = OAuthMsg;
    type State = OAuthState;
    type Arguments = OAuthArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: OAuthArgs,
    ) -> Result<OAuthState, ActorProcessingErr> {
        let p = &args.partition;
        let clients = strip_keys("client/", p.scan::<Client>("client/")?);
        let codes = strip_keys("code/", p.scan::<StoredCode>("code/")?);
        let refresh = strip_keys("refresh/", p.scan::<StoredRefresh>("refresh/")?);
        let grants = p
            .scan::<Grant>("grant/")?
            .into_iter()
            .map(|(_, g)| (g.id, g))
            .collect();
        let key = ActorKey::global(ActorKind::OAuth);
        args.roster.started(key);
        myself.send_interval(std::time::Duration::from_secs(600), || OAuthMsg::Sweep);
        Ok(OAuthState {
            key,
            partition: args.partition,
            roster: args.roster,
            config: args.config,
            clients,
            codes,
            refresh,
            grants,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut OAuthState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: OAuthMsg,
        state: &mut OAuthState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            OAuthMsg::Register(reg, reply) => {
                reply_or_reload(reply, state.register(reg).await, is_storage)?;
            }
            OAuthMsg::GetClient(id, reply) => {
                let _ = reply.send(state.clients.get(&id).cloned());
            }
            OAuthMsg::IssueCode(req, reply) => {
                reply_or_reload(reply, state.issue_code(req).await, is_storage)?;
            }
            OAuthMsg::RedeemCode(req, reply) => {
                reply_or_reload(reply, state.redeem_code(req).await, is_storage)?;
            }
            OAuthMsg::Refresh(req, reply) => {
                reply_or_reload(reply, state.refresh(req).await, is_storage)?;
            }
            OAuthMsg::RevokeRefreshToken(token, client_id, reply) => {
                let family = state
                    .refresh
                    .get(&hash_secret(&token))
                    .map(|r| r.family)
                    .filter(|f| {
                        state
                            .grants
                            .get(f)
                            .is_some_and(|g| g.client_id == client_id)
                    });
                let result = match family {
                    Some(f) => state.revoke_family(f).await,
                    None => Ok(()),
                };
                reply_or_reload(reply, result, is_storage)?;
            }
            OAuthMsg::RevokeFamilyOfClient(family, client_id, reply) => {
                let result = if state
                    .grants
                    .get(&family)
                    .is_some_and(|g| g.client_id == client_id)
                {
                    state.revoke_family(family).await
                } else {
                    Ok(())
                };
                reply_or_reload(reply, result, is_storage)?;
            }
            OAuthMsg::LiveGrant(family, reply) => {
                let live = state
                    .grants
                    .get(&family)
                    .filter(|g| g.expires_at > now_millis())
                    .cloned();
                let _ = reply.send(live);
            }
            OAuthMsg::ListGrants(user, reply) => {
                let now = now_millis();
                let mut list: Vec<Grant> = state
                    .grants
                    .values()
                    .filter(|g| g.user == user && g.expires_at > now)
                    .cloned()
                    .collect();
                list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                let _ = reply.send(list);
            }
            OAuthMsg::RevokeGrant(user, family, reply) => {
                let result = if state.grants.get(&family).is_some_and(|g| g.user == user) {
                    state.revoke_family(family).await.map(|()| true)
                } else {
                    Ok(false)
                };
                reply_or_reload(reply, result, is_storage)?;
            }
            OAuthMsg::Sweep => state.sweep().await,
            OAuthMsg::InjectPanic => panic!("injected panic in oauth handler"),
        }
        Ok(())
    }
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge: base64url (no padding) of a SHA-256, so exactly 43 characters.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// RFC 7636 §4.6 with S256: `BASE64URL(SHA256(verifier)) == challenge`, in constant time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Invisible formatting characters (Unicode category Cf: bidi overrides and isolates,
/// zero-width spaces and joiners, …), which could make a consent page show a name other than
/// the one registered.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// A redirect URI a client may register: `https` anywhere, or `http` on a loopback address
/// (native apps, RFC 8252 §7.3); absolute, no fragment, no credentials.
pub fn check_redirect_uri(uri: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(uri).map_err(|e| format!("\"{uri}\" is not a URL: {e}"))?;
    if parsed.fragment().is_some() {
        return Err(format!(
            "\"{uri}\" has a fragment (#…), which redirect URIs may not"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("\"{uri}\" carries credentials"));
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(format!(
            "\"{uri}\" uses http on a non-loopback host: use https, or http://127.0.0.1, \
             http://[::1] or http://localhost for a native app"
        )),
        s => Err(format!(
            "\"{uri}\" uses the scheme \"{s}\": redirect URIs must be https, or loopback http"
        )),
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether `presented` names the registered redirect URI: exactly, or (RFC 8252 §7.3) a
/// loopback http URI differing only in its port, since native apps listen on any free port.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(mut r), Ok(mut p)) = (url::Url::parse(registered), url::Url::parse(presented)) else {
        return false;
    };
    if r.scheme() != "http" || !is_loopback(&r) || !is_loopback(&p) {
        return false;
    }
    let _ = r.set_port(None);
    let _ = p.set_port(None);
    r == p
}

impl Client {
    /// Validates a registration (RFC 7591 §2) into a new client.
    pub fn register(reg: Registration, now: UnixMillis) -> Result<Client, OAuthError> {
        let meta = OAuthError::InvalidClientMetadata;
        if reg.redirect_uris.is_empty() {
            return Err(OAuthError::InvalidRedirectUri(
                "redirect_uris is required: at least one https or loopback http URI".into(),
            ));
        }
        if reg.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthError::InvalidRedirectUri(format!(
                "at most {MAX_REDIRECT_URIS} redirect_uris"
            )));
        }
        for uri in &reg.redirect_uris {
            if uri.len() > 2000 {
                return Err(OAuthError::InvalidRedirectUri(
                    "a redirect URI is at most 2000 characters".into(),
                ));
            }
            check_redirect_uri(uri).map_err(OAuthError::InvalidRedirectUri)?;
        }
        match reg.token_endpoint_auth_method.as_deref() {
            // A client asking for a shared secret is registered as public instead (RFC 7591
            // §3.2.1 lets the server substitute values; the answer says "none"): PKCE binds its
            // codes, and a secret kept by an app on someone's laptop protects nothing more.
            None | Some("none" | "client_secret_basic" | "client_secret_post") => {}
            Some(m) => {
                return Err(meta(format!(
                    "token_endpoint_auth_method \"{m}\" is not supported: Larder registers \
                     public clients (\"none\") that prove themselves with PKCE"
                )));
            }
        }
        if let Some(grants) = &reg.grant_types
            && let Some(g) = grants
                .iter()
                .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
        {
            return Err(meta(format!(
                "grant_types may name authorization_code and refresh_token, not \"{g}\""
            )));
        }
        if let Some(types) = &reg.response_types
            && let Some(t) = types.iter().find(|t| t.as_str() != "code")
        {
            return Err(meta(format!(
                "response_types may only be [\"code\"], not \"{t}\""
            )));
        }
        let text =
            |field: &str, v: Option<String>, max: usize| -> Result<Option<String>, OAuthError> {
                let Some(v) = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
                    return Ok(None);
                };
                if v.chars().count() > max || v.chars().any(|c| c.is_control() || is_format(c)) {
                    return Err(OAuthError::InvalidClientMetadata(format!(
                        "{field} is at most {max} characters, without control or invisible \
                         formatting characters"
                    )));
                }
                Ok(Some(v))
            };
        let client_name = text("client_name", reg.client_name, 100)?;
        let client_uri = text("client_uri", reg.client_uri, 2000)?;
        if let Some(u) = &client_uri
            && !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
        {
            return Err(meta("client_uri must be an http(s) URL".into()));
        }
        Ok(Client {
            client_id: format!("lc_{}", &new_secret()[..22]),
            client_name,
            client_uri,
            redirect_uris: reg.redirect_uris,
            created_at: now,
            used: false,
            last_used_at: 0,
        })
    }
}

impl OAuthState {
    async fn register(&mut self, reg: Registration) -> Result<Client, OAuthError> {
        let client = Client::register(reg, now_millis())?;
        let mut changes = Changes::new();
        let evicted = if self.clients.len() >= self.config.max_clients.max(1) {
            // Make room with the oldest registration nobody ever granted access to.
            let oldest = self
                .clients
                .values()
                .filter(|c| !c.used)
                .min_by_key(|c| c.created_at)
                .map(|c| c.client_id.clone())
                .ok_or_else(|| {
                    OAuthError::TemporarilyUnavailable(
                        "too many clients are registered; try again later".into(),
                    )
                })?;
            changes.delete(format!("client/{oldest}"));
            Some(oldest)
        } else {
            None
        };
        changes
            .put(format!("client/{}", client.client_id), &client)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        if let Some(oldest) = evicted {
            self.clients.remove(&oldest);
        }
        self.clients
            .insert(client.client_id.clone(), client.clone());
        Ok(client)
    }

    async fn issue_code(&mut self, req: CodeRequest) -> Result<String, OAuthError> {
        let Some(client) = self.clients.get(&req.client_id) else {
            return Err(OAuthError::InvalidClient(format!(
                "no client is registered as \"{}\"",
                req.client_id
            )));
        };
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_uri_matches(r, &req.redirect_uri))
        {
            return Err(OAuthError::InvalidRequest(
                "redirect_uri is not one the client registered".into(),
            ));
        }
        if !valid_challenge(&req.code_challenge) {
            return Err(OAuthError::InvalidRequest(
                "code_challenge must be an S256 challenge (43 base64url characters)".into(),
            ));
        }
        let code = new_secret();
        let stored = StoredCode {
            request: req,
            expires_at: now_millis() + ttl_millis(self.config.code_ttl),
            redeemed: None,
        };
        let mut changes = Changes::new();
        changes
            .put(format!("code/{}", hash_secret(&code)), &stored)
            .map_err(storage)?;
        let mut client = client.clone();
        client.used = true;
        client.last_used_at = now_millis();
        changes
            .put(format!("client/{}", client.client_id), &client)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.codes.insert(hash_secret(&code), stored);
        self.clients.insert(client.client_id.clone(), client);
        Ok(code)
    }

    async fn redeem_code(&mut self, req: CodeRedemption) -> Result<Issued, OAuthError> {
        let bad = || {
            OAuthError::InvalidGrant(
                "the authorization code is invalid, expired or already used".into(),
            )
        };
        if !self.clients.contains_key(&req.client_id) {
            return Err(OAuthError::InvalidClient(format!(
                "no client is registered as \"{}\"",
                req.client_id
            )));
        }
        let hash = hash_secret(&req.code);
        let stored = self.codes.get(&hash).cloned().ok_or_else(bad)?;
        if let Some(family) = stored.redeemed {
            // RFC 6749 §4.1.2: a code used twice revokes what its first use issued.
            tracing::warn!(client = %req.client_id, "authorization code replayed; revoking its grant");
            self.revoke_family(family).await?;
            return Err(bad());
        }
        let request = &stored.request;
        if stored.expires_at <= now_millis() || request.client_id != req.client_id {
            return Err(bad());
        }
        if request.redirect_uri != req.redirect_uri {
            return Err(OAuthError::InvalidGrant(
                "redirect_uri differs from the one the code was issued for".into(),
            ));
        }
        if !valid_verifier(&req.code_verifier) {
            return Err(OAuthError::InvalidGrant(
                "code_verifier must be 43 to 128 unreserved characters (RFC 7636)".into(),
            ));
        }
        if !pkce_matches(&req.code_verifier, &request.code_challenge) {
            return Err(OAuthError::InvalidGrant(
                "code_verifier does not match the code_challenge (PKCE S256)".into(),
            ));
        }
        if req
            .resource
            .as_ref()
            .is_some_and(|r| *r != request.resource)
        {
            return Err(OAuthError::InvalidTarget(
                "resource differs from the one consented to".into(),
            ));
        }
        let now = now_millis();
        let client_name = self
            .clients
            .get(&req.client_id)
            .and_then(|c| c.client_name.clone());
        let grant = Grant {
            id: uuid::Uuid::now_v7(),
            user: request.user,
            client_id: request.client_id.clone(),
            client_name,
            resource: request.resource.clone(),
            scope: request.scope.clone(),
            created_at: now,
            last_used_at: now,
            expires_at: now + ttl_millis(self.config.refresh_ttl),
        };
        let mut used = stored.clone();
        used.redeemed = Some(grant.id);
        let mut changes = Changes::new();
        changes
            .put(format!("code/{hash}"), &used)
            .map_err(storage)?;
        let issued = self.issue(&mut changes, &grant)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.codes.insert(hash, used);
        self.remember(&issued, grant);
        Ok(issued)
    }

    async fn refresh(&mut self, req: RefreshRequest) -> Result<Issued, OAuthError> {
        let bad =
            || OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".into());
        if !self.clients.contains_key(&req.client_id) {
            return Err(OAuthError::InvalidClient(format!(
                "no client is registered as \"{}\"",
                req.client_id
            )));
        }
        let hash = hash_secret(&req.refresh_token);
        let stored = self.refresh.get(&hash).cloned().ok_or_else(bad)?;
        let grant = self.grants.get(&stored.family).cloned().ok_or_else(bad)?;
        if grant.client_id != req.client_id {
            return Err(bad());
        }
        if stored.used {
            tracing::warn!(client = %req.client_id, "refresh token replayed; revoking its family");
            self.revoke_family(stored.family).await?;
            return Err(OAuthError::InvalidGrant(
                "this refresh token was already used: every token of this grant is now revoked"
                    .into(),
            ));
        }
        let now = now_millis();
        if stored.expires_at <= now || grant.expires_at <= now {
            return Err(bad());
        }
        if req.resource.as_ref().is_some_and(|r| *r != grant.resource) {
            return Err(OAuthError::InvalidTarget(
                "resource differs from the one consented to".into(),
            ));
        }
        let mut used = stored;
        used.used = true;
        let mut changes = Changes::new();
        changes
            .put(format!("refresh/{hash}"), &used)
            .map_err(storage)?;
        let grant = Grant {
            last_used_at: now,
            expires_at: now + ttl_millis(self.config.refresh_ttl),
            ..grant
        };
        let issued = self.issue(&mut changes, &grant)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.refresh.insert(hash, used);
        self.remember(&issued, grant);
        Ok(issued)
    }

    /// Writes `grant` and a fresh refresh token for it into `changes`.
    fn issue(&self, changes: &mut Changes, grant: &Grant) -> Result<Issued, OAuthError> {
        let token = new_secret();
        let stored = StoredRefresh {
            family: grant.id,
            expires_at: grant.expires_at,
            used: false,
        };
        changes
            .put(format!("refresh/{}", hash_secret(&token)), &stored)
            .map_err(storage)?;
        changes
            .put(format!("grant/{}", grant.id), grant)
            .map_err(storage)?;
        Ok(Issued {
            family: grant.id,
            user: grant.user,
            client_id: grant.client_id.clone(),
            resource: grant.resource.clone(),
            scope: grant.scope.clone(),
            refresh_token: token,
            refresh_expires_at: grant.expires_at,
        })
    }

    /// Applies what [`OAuthState::issue`] wrote, once it is durable.
    fn remember(&mut self, issued: &Issued, grant: Grant) {
        self.refresh.insert(
            hash_secret(&issued.refresh_token),
            StoredRefresh {
                family: grant.id,
                expires_at: grant.expires_at,
                used: false,
            },
        );
        self.grants.insert(grant.id, grant);
    }

    /// Deletes a grant and every refresh token of it, in one durable commit. Codes that
    /// created it stay (marked redeemed) until they expire, so replaying one still fails.
    async fn revoke_family(&mut self, family: uuid::Uuid) -> Result<(), OAuthError> {
        let tokens: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, r)| r.family == family)
            .map(|(h, _)| h.clone())
            .collect();
        let mut changes = Changes::new();
        changes.delete(format!("grant/{family}"));
        for h in &tokens {
            changes.delete(format!("refresh/{h}"));
        }
        self.partition.commit(changes).await.map_err(storage)?;
        self.grants.remove(&family);
        for h in tokens {
            self.refresh.remove(&h);
        }
        Ok(())
    }

    async fn sweep(&mut self) {
        let now = now_millis();
        let mut changes = Changes::new();
        let codes: Vec<String> = self
            .codes
            .iter()
            .filter(|(_, c)| c.expires_at <= now)
            .map(|(h, _)| h.clone())
            .collect();
        let grants: Vec<uuid::Uuid> = self
            .grants
            .values()
            .filter(|g| g.expires_at <= now)
            .map(|g| g.id)
            .collect();
        let refresh: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, r)| r.expires_at <= now || grants.contains(&r.family))
            .map(|(h, _)| h.clone())
            .collect();
        let clients: Vec<String> = self
            .clients
            .values()
            .filter(|c| {
                let never_used = !c.used && c.created_at + UNUSED_CLIENT_TTL_MS <= now;
                let idle = c.used
                    && c.last_used_at + IDLE_CLIENT_TTL_MS <= now
                    && !self.grants.values().any(|g| g.client_id == c.client_id);
                never_used || idle
            })
            .map(|c| c.client_id.clone())
            .collect();
        for h in &codes {
            changes.delete(format!("code/{h}"));
        }
        for g in &grants {
            changes.delete(format!("grant/{g}"));
        }
        for h in &refresh {
            changes.delete(format!("refresh/{h}"));
        }
        for c in &clients {
            changes.delete(format!("client/{c}"));
        }
        if let Err(e) = self.partition.commit(changes).await {
            tracing::warn!(error = %e, "could not sweep expired OAuth state; will retry");
            return;
        }
        for h in codes {
            self.codes.remove(&h);
        }
        for g in grants {
            self.grants.remove(&g);
        }
        for h in refresh {
            self.refresh.remove(&h);
        }
        for c in clients {
            self.clients.remove(&c);
        }
    }
}

fn storage(e: crate::store::StoreError) -> OAuthError {
    tracing::error!(error = %e, "OAuth commit failed");
    OAuthError::Storage(e.to_string())
}

fn is_storage(e: &OAuthError) -> bool {
    matches!(e, OAuthError::Storage(_))
}

#[cfg(test)]
mod tests;
