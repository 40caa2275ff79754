//! Sign-in through OpenID providers, as `Accounts` sees it: pending logins (what a browser's
//! sign-in started with), identities (an (issuer, subject) pair that signs in one user), and the
//! sign-up allowlist. The edge talks to the provider; this module only decides and stores.
//!
//! A pending login is stored under the SHA-256 of a random value only the browser holds (its
//! cookie) and is deleted, durably, the first time a callback presents it: the state, nonce and
//! PKCE verifier it carries can be used once, even across a crash.
//!
//! Deciding who signs in ([`OidcSignIn`]):
//! 1. a known identity signs in its user (the allowlist is not consulted: existing users stay);
//! 2. else, when the operator allows linking and the provider vouches for the email, an existing
//!    user is linked: one named by that email, or one whose identity at another provider has it;
//! 3. else it is a sign-up: the address must be verified and on the allowlist; the new user is
//!    named by the address itself when that is a valid user name nobody has, else `user-<hex>`.
//!    Never by a transformed address: `erin+x@…` named `erin-x@…` would be linked to the owner of
//!    the real `erin-x@…` (and be an admin if `auth.admins` names that address).
//!
//! The user, the identity and the session are written in one commit.

use serde::{Deserialize, Serialize};

use super::allowlist::{self, AllowEntry};
use super::{AccountsError, AccountsState, NewSession, User, hash_secret, storage};
use crate::ids::{UnixMillis, UserId, now_millis};
use crate::store::Changes;

/// What a browser's sign-in started with; handed back once, to the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOidcLogin {
    /// The provider's `name` in the configuration.
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub expires_at: UnixMillis,
}

/// An (issuer, subject) pair that signs in one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub user: UserId,
    /// The verified address the provider gave when the identity was created, if any.
    pub email: Option<String>,
    pub created_at: UnixMillis,
}

/// A person the provider vouched for (ID token and userinfo already validated by the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcSignIn {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// The provider's `email_verified`; absent counts as not verified.
    pub email_verified: bool,
    /// `auth.link_verified_email`.
    pub link_verified_email: bool,
}

/// How the person got in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedInAs {
    /// A known identity.
    Known,
    /// A new identity linked to an existing user by verified email.
    Linked,
    /// A new user.
    SignedUp,
}

/// The session opened for an OpenID sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcSignedIn {
    pub session: NewSession,
    pub how: SignedInAs,
}

/// The storage key of an identity: the hash keeps arbitrary issuer/subject text out of keys.
pub(super) fn identity_key(issuer: &str, subject: &str) -> String {
    hash_secret(&format!("{issuer}\n{subject}"))
}

impl AccountsState {
    pub(super) async fn begin_oidc_login(
        &mut self,
        binding: &str,
        pending: PendingOidcLogin,
    ) -> Result<(), AccountsError> {
        let hash = hash_secret(binding);
        let mut changes = Changes::new();
        changes
            .put(format!("oidcpending/{hash}"), &pending)
            .map_err(storage)?;
        // Starting a sign-in needs no account: bound the waiting ones, dropping the oldest.
        let oldest = (self.pending_oidc.len() >= self.config.max_pending_oidc.max(1))
            .then(|| {
                self.pending_oidc
                    .iter()
                    .min_by_key(|(_, p)| p.expires_at)
                    .map(|(h, _)| h.clone())
            })
            .flatten();
        if let Some(h) = &oldest {
            changes.delete(format!("oidcpending/{h}"));
        }
        self.partition.commit(changes).await.map_err(storage)?;
        if let Some(h) = oldest {
            self.pending_oidc.remove(&h);
        }
        self.pending_oidc.insert(hash, pending);
        Ok(())
    }

    /// The pending login behind `binding`, deleted durably before it is handed out.
    pub(super) async fn take_oidc_login(
        &mut self,
        binding: &str,
    ) -> Result<Option<PendingOidcLogin>, AccountsError> {
        let hash = hash_secret(binding);
        let Some(pending) = self.pending_oidc.get(&hash).cloned() else {
            return Ok(None);
        };
        let mut changes = Changes::new();
        changes.delete(format!("oidcpending/{hash}"));
        self.partition.commit(changes).await.map_err(storage)?;
        self.pending_oidc.remove(&hash);
        Ok((pending.expires_at > now_millis()).then_some(pending))
    }

    pub(super) async fn oidc_sign_in(
        &mut self,
        req: OidcSignIn,
    ) -> Result<OidcSignedIn, AccountsError> {
        let key = identity_key(&req.issuer, &req.subject);
        let verified = req
            .email
            .as_deref()
            .filter(|_| req.email_verified)
            .and_then(allowlist::normalise_email);
        let mut changes = Changes::new();
        let mut new_user = None;
        let mut new_identity = None;
        let (user, how) = if let Some(known) = self.identities.get(&key) {
            let user = self
                .users
                .get(&known.user)
                .cloned()
                .ok_or_else(|| AccountsError::Invalid("this identity's user is gone".into()))?;
            (user, SignedInAs::Known)
        } else {
            let linked = match &verified {
                Some(email) if req.link_verified_email => self.user_with_email(email),
                _ => None,
            };
            let (user, how) = match linked {
                Some(user) => (user, SignedInAs::Linked),
                None => {
                    let Some(email) = &verified else {
                        return Err(AccountsError::Invalid(
                            "the provider did not vouch for an email address (none given, or \
                             not verified), and Larder needs a verified one to sign you up"
                                .into(),
                        ));
                    };
                    if !self.allowlist.keys().any(|p| allowlist::matches(p, email)) {
                        return Err(AccountsError::NotOnAllowlist(email.clone()));
                    }
                    let user = User {
                        id: UserId::new(),
                        name: self.free_name(email),
                        created_at: now_millis(),
                    };
                    changes
                        .put(format!("user/{}", user.id), &user)
                        .map_err(storage)?;
                    new_user = Some(user.clone());
                    (user, SignedInAs::SignedUp)
                }
            };
            let identity = Identity {
                issuer: req.issuer.clone(),
                subject: req.subject.clone(),
                user: user.id,
                email: verified.clone(),
                created_at: now_millis(),
            };
            changes
                .put(format!("identity/{key}"), &identity)
                .map_err(storage)?;
            new_identity = Some(identity);
            (user, how)
        };
        let (session_hash, stored, session) = self.new_session(user);
        changes
            .put(format!("session/{session_hash}"), &stored)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        if let Some(user) = new_user {
            self.by_name.insert(user.name.clone(), user.id);
            self.users.insert(user.id, user);
        }
        if let Some(identity) = new_identity {
            self.identities.insert(key, identity);
        }
        self.sessions.insert(session_hash, stored);
        Ok(OidcSignedIn { session, how })
    }

    /// The user a verified address belongs to: one named by it, else one with an identity
    /// created with it.
    fn user_with_email(&self, email: &str) -> Option<User> {
        if let Some(id) = self.by_name.get(email) {
            return self.users.get(id).cloned();
        }
        let mut owners = self
            .identities
            .values()
            .filter(|i| i.email.as_deref() == Some(email))
            .map(|i| i.user);
        let first = owners.next()?;
        // Two users claiming one address: link neither rather than guess.
        if owners.any(|u| u != first) {
            return None;
        }
        self.users.get(&first).cloned()
    }

    /// A sign-up's user name: the verified address verbatim when it is a valid user name that
    /// nobody has, else an opaque `user-<12 hex>` that cannot be mistaken for any address
    /// (names link accounts and name admins, so a name must never be a *different* address).
    fn free_name(&self, email: &str) -> String {
        if super::normalise_user_name(email).is_ok_and(|n| n == email)
            && !self.by_name.contains_key(email)
        {
            return email.to_owned();
        }
        loop {
            let name = format!("user-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            if !self.by_name.contains_key(&name) {
                return name;
            }
        }
    }

    pub(super) async fn allow(&mut self, raw: &str) -> Result<bool, AccountsError> {
        let pattern = allowlist::normalise_pattern(raw)?;
        if self.allowlist.contains_key(&pattern) {
            return Ok(false);
        }
        let entry = AllowEntry {
            pattern: pattern.clone(),
            added_at: now_millis(),
        };
        let mut changes = Changes::new();
        changes
            .put(format!("allow/{pattern}"), &entry)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.allowlist.insert(pattern, entry);
        Ok(true)
    }

    pub(super) async fn disallow(&mut self, raw: &str) -> Result<bool, AccountsError> {
        let pattern = allowlist::normalise_pattern(raw)?;
        if !self.allowlist.contains_key(&pattern) {
            return Ok(false);
        }
        let mut changes = Changes::new();
        changes.delete(format!("allow/{pattern}"));
        self.partition.commit(changes).await.map_err(storage)?;
        self.allowlist.remove(&pattern);
        Ok(true)
    }
}
