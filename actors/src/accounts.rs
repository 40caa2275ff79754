//! `Accounts`: the node-global owner of users, one-time login tokens and browser sessions.
//!
//! Secrets never rest in plaintext: login tokens and session tokens are 256-bit random strings
//! handed out once; only their SHA-256 is stored. Redeeming a login token deletes it in the same
//! durable commit that creates the session, so a link works exactly once, even across a crash.
//!
//! Personal API tokens (`lpat_…`, for scripts) live here too: shown once, stored as SHA-256,
//! named, optionally expiring, revocable. Authentication looks a token up by its hash, so one
//! global owner is needed, as for sessions.
//!
//! Sign-in through OpenID providers (identities, pending logins) and the sign-up allowlist are
//! in [`oidc`] and [`allowlist`]; their records live in this actor's partition too.
//!
//! Must not: know about HTTP or cookies (the edge maps sessions to cookies).

pub mod allowlist;
pub mod oidc;

use std::collections::{BTreeMap, HashMap};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::ids::{UnixMillis, UserId, now_millis};
use crate::roster::{ActorKey, ActorKind, Roster};
pub(crate) use crate::secret::hash_secret;
use crate::secret::{new_secret, strip_keys, ttl_millis};
use crate::store::{Changes, Partition};
use crate::supervision::reply_or_reload;

pub use allowlist::AllowEntry;
pub use oidc::{Identity, OidcSignIn, OidcSignedIn, PendingOidcLogin, SignedInAs};

/// A person with their own isolated warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Unique, lowercase: letters, digits, `.`, `_`, `-`, `@`.
    pub name: String,
    pub created_at: UnixMillis,
}

/// A freshly issued one-time login token. `token` exists only in this reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginToken {
    pub token: String,
    pub user: User,
    pub expires_at: UnixMillis,
}

/// A browser session just created. `token` exists only in this reply (it becomes the cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    pub token: String,
    pub session: Session,
}

/// What the edge learns about a request's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: User,
    /// Sent back by the page in `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// The prefix of every personal API token, so a leaked one is recognisable (secret scanners).
pub const API_TOKEN_PREFIX: &str = "lpat_";
/// Most API tokens one user may hold.
pub const MAX_API_TOKENS: usize = 100;

/// A personal API token as listings show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: uuid::Uuid,
    pub user: UserId,
    pub name: String,
    /// The first characters of the secret, to tell tokens apart (`lpat_AbCd…`).
    pub hint: String,
    pub created_at: UnixMillis,
    /// `None`: does not expire.
    pub expires_at: Option<UnixMillis>,
}

/// A token just created. `secret` exists only in this reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiToken {
    pub secret: String,
    pub token: ApiToken,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateApiToken {
    pub user: UserId,
    pub name: String,
    /// Lifetime in days (1 to 3650); `None`: never expires.
    pub expires_in_days: Option<u32>,
}

/// Why an accounts operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AccountsError {
    #[error("{0}")]
    InvalidName(String),
    #[error("this login link is not valid: it was already used, has expired, or never existed")]
    InvalidLoginToken,
    #[error("{0}")]
    Invalid(String),
    #[error("could not store the change: {0}")]
    Storage(String),
    /// A sign-up whose (verified) address no allowlist pattern admits.
    #[error(
        "{0} is not on this node's allowlist for new accounts: ask its administrator to add it"
    )]
    NotOnAllowlist(String),
}

/// Messages to [`Accounts`]. Serializable: any node's edge may send them.
#[derive(RactorClusterMessage)]
pub enum AccountsMsg {
    /// The user with this name, created on first use.
    #[rpc]
    EnsureUser(String, RpcReplyPort<Result<User, AccountsError>>),
    #[rpc]
    GetUser(UserId, RpcReplyPort<Option<User>>),
    #[rpc]
    ListUsers(RpcReplyPort<Vec<User>>),
    /// A one-time login token for the named user (created on first use).
    #[rpc]
    IssueLoginToken(String, RpcReplyPort<Result<LoginToken, AccountsError>>),
    /// Who a login token would sign in, without using it up (the confirmation page).
    #[rpc]
    PeekLoginToken(String, RpcReplyPort<Option<User>>),
    /// Burns the token and opens a session for its user.
    #[rpc]
    RedeemLoginToken(String, RpcReplyPort<Result<NewSession, AccountsError>>),
    /// The live session behind a session token, if any.
    #[rpc]
    Authenticate(String, RpcReplyPort<Option<Session>>),
    /// Ends a session (logout). Idempotent.
    #[rpc]
    EndSession(String, RpcReplyPort<Result<(), AccountsError>>),
    /// Creates a personal API token; the secret is only in the reply.
    #[rpc]
    CreateApiToken(
        CreateApiToken,
        RpcReplyPort<Result<NewApiToken, AccountsError>>,
    ),
    /// A user's API tokens, newest first.
    #[rpc]
    ListApiTokens(UserId, RpcReplyPort<Vec<ApiToken>>),
    /// Revokes one of the user's tokens; `Ok(false)` if the user has no such token.
    #[rpc]
    RevokeApiToken(
        UserId,
        uuid::Uuid,
        RpcReplyPort<Result<bool, AccountsError>>,
    ),
    /// The user a valid, unexpired API token belongs to, with the token.
    #[rpc]
    AuthenticateApiToken(String, RpcReplyPort<Option<(User, ApiToken)>>),
    /// Remembers what a browser's OpenID sign-in started with, under the hash of the browser's
    /// binding value (its cookie).
    #[rpc]
    BeginOidcLogin(
        String,
        PendingOidcLogin,
        RpcReplyPort<Result<(), AccountsError>>,
    ),
    /// The pending sign-in behind a binding value, burned (durably) as it is handed out;
    /// `None` if there is none or it expired.
    #[rpc]
    TakeOidcLogin(
        String,
        RpcReplyPort<Result<Option<PendingOidcLogin>, AccountsError>>,
    ),
    /// Signs in (or links, or signs up) the person an OpenID provider vouched for and opens a
    /// session.
    #[rpc]
    OidcSignIn(
        OidcSignIn,
        RpcReplyPort<Result<OidcSignedIn, AccountsError>>,
    ),
    /// The identities that sign in a user.
    #[rpc]
    ListIdentities(UserId, RpcReplyPort<Vec<Identity>>),
    /// Adds a sign-up allowlist pattern; `Ok(false)` if it was already there.
    #[rpc]
    Allow(String, RpcReplyPort<Result<bool, AccountsError>>),
    /// Removes a pattern; `Ok(false)` if it was not there.
    #[rpc]
    Disallow(String, RpcReplyPort<Result<bool, AccountsError>>),
    /// The allowlist, sorted by pattern.
    #[rpc]
    ListAllowed(RpcReplyPort<Vec<AllowEntry>>),
    /// Drops expired tokens, sessions and pending sign-ins (sent periodically by the actor).
    Sweep,
    /// Panics inside the handler (fault injection; see `LibraryMsg::InjectPanic`).
    InjectPanic,
}

/// Lifetimes of what Accounts hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountsConfig {
    pub login_token_ttl: std::time::Duration,
    pub session_ttl: std::time::Duration,
    /// Most OpenID sign-ins waiting for their callback at once; the oldest is dropped beyond.
    pub max_pending_oidc: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            login_token_ttl: std::time::Duration::from_secs(24 * 3600),
            session_ttl: std::time::Duration::from_secs(30 * 24 * 3600),
            max_pending_oidc: 10_000,
        }
    }
}

pub struct Accounts;

pub struct AccountsArgs {
    pub partition: Partition,
    pub roster: Roster,
    pub config: AccountsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    user: UserId,
    expires_at: UnixMillis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    user: UserId,
    csrf_token: String,
    created_at: UnixMillis,
    expires_at: UnixMillis,
}

pub struct AccountsState {
    key: ActorKey,
    partition: Partition,
    roster: Roster,
    config: AccountsConfig,
    users: BTreeMap<UserId, User>,
    by_name: HashMap<String, UserId>,
    /// Keyed by token hash.
    tokens: HashMap<String, StoredToken>,
    /// Keyed by session-token hash.
    sessions: HashMap<String, StoredSession>,
    /// Keyed by API-token hash.
    api_tokens: HashMap<String, ApiToken>,
    /// Keyed by the hash of the browser's binding value.
    pending_oidc: HashMap<String, PendingOidcLogin>,
    /// Keyed by [`oidc::identity_key`].
    identities: HashMap<String, Identity>,
    /// Keyed by normalised pattern.
    allowlist: BTreeMap<String, AllowEntry>,
}

impl Actor for Accounts {
    type Msg = AccountsMsg;
    type State = AccountsState;
    type Arguments = AccountsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: AccountsArgs,
    ) -> Result<AccountsState, ActorProcessingErr> {
        let users: BTreeMap<UserId, User> = args
            .partition
            .scan::<User>("user/")?
            .into_iter()
            .map(|(_, u)| (u.id, u))
            .collect();
        let by_name = users.values().map(|u| (u.name.clone(), u.id)).collect();
        let tokens = strip_keys("token/", args.partition.scan::<StoredToken>("token/")?);
        let sessions = strip_keys(
            "session/",
            args.partition.scan::<StoredSession>("session/")?,
        );
        let api_tokens = strip_keys("apitoken/", args.partition.scan::<ApiToken>("apitoken/")?);
        let pending_oidc = strip_keys(
            "oidcpending/",
            args.partition.scan::<PendingOidcLogin>("oidcpending/")?,
        );
        let identities = strip_keys("identity/", args.partition.scan::<Identity>("identity/")?);
        let allowlist = args
            .partition
            .scan::<AllowEntry>("allow/")?
            .into_iter()
            .map(|(_, e)| (e.pattern.clone(), e))
            .collect();
        let key = ActorKey::global(ActorKind::Accounts);
        args.roster.started(key);
        myself.send_interval(std::time::Duration::from_secs(600), || AccountsMsg::Sweep);
        Ok(AccountsState {
            key,
            partition: args.partition,
            roster: args.roster,
            config: args.config,
            users,
            by_name,
            tokens,
            sessions,
            api_tokens,
            pending_oidc,
            identities,
            allowlist,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut AccountsState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: AccountsMsg,
        state: &mut AccountsState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            AccountsMsg::EnsureUser(name, reply) => {
                reply_or_reload(reply, state.ensure_user(&name).await, is_storage)?;
            }
            AccountsMsg::GetUser(id, reply) => {
                let _ = reply.send(state.users.get(&id).cloned());
            }
            AccountsMsg::ListUsers(reply) => {
                let _ = reply.send(state.users.values().cloned().collect());
            }
            AccountsMsg::IssueLoginToken(name, reply) => {
                reply_or_reload(reply, state.issue_login_token(&name).await, is_storage)?;
            }
            AccountsMsg::PeekLoginToken(token, reply) => {
                let _ = reply.send(state.peek(&token));
            }
            AccountsMsg::RedeemLoginToken(token, reply) => {
                reply_or_reload(reply, state.redeem(&token).await, is_storage)?;
            }
            AccountsMsg::Authenticate(token, reply) => {
                let _ = reply.send(state.authenticate(&token));
            }
            AccountsMsg::EndSession(token, reply) => {
                reply_or_reload(reply, state.end_session(&token).await, is_storage)?;
            }
            AccountsMsg::CreateApiToken(req, reply) => {
                reply_or_reload(reply, state.create_api_token(req).await, is_storage)?;
            }
            AccountsMsg::ListApiTokens(user, reply) => {
                let mut list: Vec<ApiToken> = state
                    .api_tokens
                    .values()
                    .filter(|t| t.user == user)
                    .cloned()
                    .collect();
                list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                let _ = reply.send(list);
            }
            AccountsMsg::RevokeApiToken(user, id, reply) => {
                reply_or_reload(reply, state.revoke_api_token(user, id).await, is_storage)?;
            }
            AccountsMsg::AuthenticateApiToken(secret, reply) => {
                let _ = reply.send(state.authenticate_api_token(&secret));
            }
            AccountsMsg::BeginOidcLogin(binding, pending, reply) => {
                let done = state.begin_oidc_login(&binding, pending).await;
                reply_or_reload(reply, done, is_storage)?;
            }
            AccountsMsg::TakeOidcLogin(binding, reply) => {
                reply_or_reload(reply, state.take_oidc_login(&binding).await, is_storage)?;
            }
            AccountsMsg::OidcSignIn(req, reply) => {
                reply_or_reload(reply, state.oidc_sign_in(req).await, is_storage)?;
            }
            AccountsMsg::ListIdentities(user, reply) => {
                let mut list: Vec<Identity> = state
                    .identities
                    .values()
                    .filter(|i| i.user == user)
                    .cloned()
                    .collect();
                list.sort_by_key(|i| i.created_at);
                let _ = reply.send(list);
            }
            AccountsMsg::Allow(pattern, reply) => {
                reply_or_reload(reply, state.allow(&pattern).await, is_storage)?;
            }
            AccountsMsg::Disallow(pattern, reply) => {
                reply_or_reload(reply, state.disallow(&pattern).await, is_storage)?;
            }
            AccountsMsg::ListAllowed(reply) => {
                let _ = reply.send(state.allowlist.values().cloned().collect());
            }
            AccountsMsg::Sweep => state.sweep().await,
            AccountsMsg::InjectPanic => panic!("injected panic in accounts handler"),
        }
        Ok(())
    }
}

/// Checks and normalises a user name.
pub fn normalise_user_name(name: &str) -> Result<String, AccountsError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.len() > 64 {
        return Err(AccountsError::InvalidName(
            "user names are 1 to 64 characters".into(),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(AccountsError::InvalidName(format!(
            "\"{name}\" is not a valid user name: use letters, digits, '.', '_', '-' or '@'"
        )));
    }
    Ok(name)
}

impl AccountsState {
    async fn ensure_user(&mut self, name: &str) -> Result<User, AccountsError> {
        let name = normalise_user_name(name)?;
        if let Some(id) = self.by_name.get(&name) {
            return Ok(self.users[id].clone());
        }
        let user = User {
            id: UserId::new(),
            name,
            created_at: now_millis(),
        };
        let mut changes = Changes::new();
        changes
            .put(format!("user/{}", user.id), &user)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.by_name.insert(user.name.clone(), user.id);
        self.users.insert(user.id, user.clone());
        Ok(user)
    }

    async fn issue_login_token(&mut self, name: &str) -> Result<LoginToken, AccountsError> {
        let user = self.ensure_user(name).await?;
        let token = new_secret();
        let hash = hash_secret(&token);
        let stored = StoredToken {
            user: user.id,
            expires_at: now_millis() + ttl_millis(self.config.login_token_ttl),
        };
        let mut changes = Changes::new();
        changes
            .put(format!("token/{hash}"), &stored)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.tokens.insert(hash, stored.clone());
        Ok(LoginToken {
            token,
            user,
            expires_at: stored.expires_at,
        })
    }

    fn peek(&self, token: &str) -> Option<User> {
        let stored = self.tokens.get(&hash_secret(token))?;
        if stored.expires_at <= now_millis() {
            return None;
        }
        self.users.get(&stored.user).cloned()
    }

    async fn redeem(&mut self, token: &str) -> Result<NewSession, AccountsError> {
        let hash = hash_secret(token);
        let stored = self
            .tokens
            .get(&hash)
            .cloned()
            .ok_or(AccountsError::InvalidLoginToken)?;
        let now = now_millis();
        let user = self.users.get(&stored.user).cloned();
        let mut changes = Changes::new();
        changes.delete(format!("token/{hash}"));
        let (Some(user), true) = (user, stored.expires_at > now) else {
            // Expired or orphaned: burn it anyway.
            self.partition.commit(changes).await.map_err(storage)?;
            self.tokens.remove(&hash);
            return Err(AccountsError::InvalidLoginToken);
        };
        let (session_hash, stored_session, new) = self.new_session(user);
        changes
            .put(format!("session/{session_hash}"), &stored_session)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.tokens.remove(&hash);
        self.sessions.insert(session_hash, stored_session);
        Ok(new)
    }

    /// A fresh session for `user`: its token's hash and record (for the caller to commit and
    /// then keep), and what the caller hands back.
    fn new_session(&self, user: User) -> (String, StoredSession, NewSession) {
        let now = now_millis();
        let token = new_secret();
        let stored = StoredSession {
            user: user.id,
            csrf_token: new_secret(),
            created_at: now,
            expires_at: now + ttl_millis(self.config.session_ttl),
        };
        let new = NewSession {
            token: token.clone(),
            session: Session {
                user,
                csrf_token: stored.csrf_token.clone(),
                created_at: stored.created_at,
                expires_at: stored.expires_at,
            },
        };
        (hash_secret(&token), stored, new)
    }

    fn authenticate(&self, token: &str) -> Option<Session> {
        let stored = self.sessions.get(&hash_secret(token))?;
        if stored.expires_at <= now_millis() {
            return None;
        }
        let user = self.users.get(&stored.user)?.clone();
        Some(Session {
            user,
            csrf_token: stored.csrf_token.clone(),
            created_at: stored.created_at,
            expires_at: stored.expires_at,
        })
    }

    async fn end_session(&mut self, token: &str) -> Result<(), AccountsError> {
        let hash = hash_secret(token);
        if !self.sessions.contains_key(&hash) {
            return Ok(());
        }
        let mut changes = Changes::new();
        changes.delete(format!("session/{hash}"));
        self.partition.commit(changes).await.map_err(storage)?;
        self.sessions.remove(&hash);
        Ok(())
    }

    async fn create_api_token(
        &mut self,
        req: CreateApiToken,
    ) -> Result<NewApiToken, AccountsError> {
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(AccountsError::Invalid(
                "a token needs a name of 1 to 80 characters".into(),
            ));
        }
        if !self.users.contains_key(&req.user) {
            return Err(AccountsError::Invalid("no such user".into()));
        }
        let mine = self.api_tokens.values().filter(|t| t.user == req.user);
        if mine.clone().count() >= MAX_API_TOKENS {
            return Err(AccountsError::Invalid(format!(
                "at most {MAX_API_TOKENS} tokens: revoke one first"
            )));
        }
        if mine.clone().any(|t| t.name.eq_ignore_ascii_case(&name)) {
            return Err(AccountsError::Invalid(format!(
                "you already have a token named \"{name}\""
            )));
        }
        let now = now_millis();
        let expires_at = match req.expires_in_days {
            None => None,
            Some(d @ 1..=3650) => Some(now + i64::from(d) * 24 * 3600 * 1000),
            Some(_) => {
                return Err(AccountsError::Invalid(
                    "a token lasts 1 to 3650 days, or does not expire".into(),
                ));
            }
        };
        let secret = format!("{API_TOKEN_PREFIX}{}", new_secret());
        let token = ApiToken {
            id: uuid::Uuid::now_v7(),
            user: req.user,
            name,
            hint: secret.chars().take(API_TOKEN_PREFIX.len() + 4).collect(),
            created_at: now,
            expires_at,
        };
        let hash = hash_secret(&secret);
        let mut changes = Changes::new();
        changes
            .put(format!("apitoken/{hash}"), &token)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.api_tokens.insert(hash, token.clone());
        Ok(NewApiToken { secret, token })
    }

    async fn revoke_api_token(
        &mut self,
        user: UserId,
        id: uuid::Uuid,
    ) -> Result<bool, AccountsError> {
        let Some(hash) = self
            .api_tokens
            .iter()
            .find(|(_, t)| t.user == user && t.id == id)
            .map(|(h, _)| h.clone())
        else {
            return Ok(false);
        };
        let mut changes = Changes::new();
        changes.delete(format!("apitoken/{hash}"));
        self.partition.commit(changes).await.map_err(storage)?;
        self.api_tokens.remove(&hash);
        Ok(true)
    }

    fn authenticate_api_token(&self, secret: &str) -> Option<(User, ApiToken)> {
        if !secret.starts_with(API_TOKEN_PREFIX) {
            return None;
        }
        let token = self.api_tokens.get(&hash_secret(secret))?;
        if token.expires_at.is_some_and(|e| e <= now_millis()) {
            return None;
        }
        Some((self.users.get(&token.user)?.clone(), token.clone()))
    }

    async fn sweep(&mut self) {
        let now = now_millis();
        let mut changes = Changes::new();
        let dead_tokens: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.expires_at <= now)
            .map(|(h, _)| h.clone())
            .collect();
        let dead_sessions: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &dead_tokens {
            changes.delete(format!("token/{h}"));
        }
        for h in &dead_sessions {
            changes.delete(format!("session/{h}"));
        }
        let dead_pending: Vec<String> = self
            .pending_oidc
            .iter()
            .filter(|(_, p)| p.expires_at <= now)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &dead_pending {
            changes.delete(format!("oidcpending/{h}"));
        }
        if let Err(e) = self.partition.commit(changes).await {
            tracing::warn!(error = %e, "could not sweep expired sessions; will retry");
            return;
        }
        for h in dead_tokens {
            self.tokens.remove(&h);
        }
        for h in dead_sessions {
            self.sessions.remove(&h);
        }
        for h in dead_pending {
            self.pending_oidc.remove(&h);
        }
    }
}

fn storage(e: crate::store::StoreError) -> AccountsError {
    tracing::error!(error = %e, "accounts commit failed");
    AccountsError::Storage(e.to_string())
}

fn is_storage(e: &AccountsError) -> bool {
    matches!(e, AccountsError::Storage(_))
}
