//! Placement: how the edge finds a user's actors, wherever they live.
//!
//! The edge never constructs or assumes a local actor; it asks [`Placement`] for handles on
//! every request. The home node of a user is a rendezvous hash over live members; with one node
//! that is always this node, and the same code path serves both. Calls made through
//! [`Placement::library`] / [`Placement::accounts`] retry when the target was passivated or
//! restarted between lookup and delivery, but only messages that were never delivered: a
//! message that reached its actor is never sent twice.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::UserId;
use crate::accounts::AccountsMsg;
use crate::catalog::CatalogMsg;
use crate::library::LibraryMsg;
use crate::node::NodeMsg;
use crate::oauth::OAuthMsg;
use crate::roster::{ActorInfo, Roster};
use crate::session::SessionMsg;
use crate::user::{UserHandles, UserMsg};
use crate::vault::VaultMsg;

/// Why a call to an actor did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    #[error("the service is temporarily unavailable: {0}")]
    Unavailable(String),
    /// The message was delivered but no answer came back (the actor crashed or stopped while
    /// handling it): it may or may not have taken effect, so it is not retried.
    #[error("the service stopped while handling the request; it may or may not have been applied")]
    Interrupted,
    #[error("the service did not answer in time")]
    Timeout,
}

/// One delivery attempt: either an outcome, or a message that never reached its target (so
/// sending it again cannot apply it twice).
enum Attempt<R> {
    Done(Result<R, ActorError>),
    Undelivered(String),
}

/// Cheap to clone; one per edge.
#[derive(Debug, Clone)]
pub struct Placement {
    root: ActorRef<NodeMsg>,
    roster: Roster,
    call_timeout: Duration,
    /// The Accounts actor, asked of the root only when it is unknown or went away.
    accounts: Arc<RwLock<Option<ActorRef<AccountsMsg>>>>,
    /// The OAuth actor, likewise.
    oauth: Arc<RwLock<Option<ActorRef<OAuthMsg>>>>,
}

/// How many times a call is re-resolved and re-sent after its target went away.
const ATTEMPTS: u32 = 5;

impl Placement {
    pub(crate) fn new(
        root: ActorRef<NodeMsg>,
        roster: Roster,
        call_timeout: Duration,
    ) -> Placement {
        Placement {
            root,
            roster,
            call_timeout,
            accounts: Arc::default(),
            oauth: Arc::default(),
        }
    }

    /// The user's actors, activated if needed.
    pub async fn user(&self, user: UserId) -> Result<UserHandles, ActorError> {
        let supervisor: ActorRef<UserMsg> = self
            .ask(&self.root, |reply| NodeMsg::Activate(user, reply))
            .await?
            .map_err(ActorError::Unavailable)?;
        self.ask(&supervisor, UserMsg::Handles).await
    }

    /// Calls the user's Library, re-resolving it if it was passivated or restarted meanwhile.
    pub async fn library<R: Send + 'static>(
        &self,
        user: UserId,
        build: impl Fn(RpcReplyPort<R>) -> LibraryMsg,
    ) -> Result<R, ActorError> {
        self.call_with_retry(
            || async move { Ok(self.user(user).await?.library) },
            || {},
            build,
        )
        .await
    }

    /// Calls the user's Vault, re-resolving it if it was passivated or restarted meanwhile.
    pub async fn vault<R: Send + 'static>(
        &self,
        user: UserId,
        build: impl Fn(RpcReplyPort<R>) -> VaultMsg,
    ) -> Result<R, ActorError> {
        self.call_with_retry(
            || async move { Ok(self.user(user).await?.vault) },
            || {},
            build,
        )
        .await
    }

    /// Calls the user's Catalog, re-resolving it if it was passivated or restarted meanwhile.
    pub async fn catalog<R: Send + 'static>(
        &self,
        user: UserId,
        build: impl Fn(RpcReplyPort<R>) -> CatalogMsg,
    ) -> Result<R, ActorError> {
        self.call_with_retry(
            || async move { Ok(self.user(user).await?.catalog) },
            || {},
            build,
        )
        .await
    }

    /// Calls the user's Session, re-resolving it if it was passivated or restarted meanwhile.
    pub async fn session<R: Send + 'static>(
        &self,
        user: UserId,
        build: impl Fn(RpcReplyPort<R>) -> SessionMsg,
    ) -> Result<R, ActorError> {
        self.call_with_retry(
            || async move { Ok(self.user(user).await?.session) },
            || {},
            build,
        )
        .await
    }

    /// Calls the node-global Accounts actor, waiting out a restart.
    pub async fn accounts<R: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<R>) -> AccountsMsg,
    ) -> Result<R, ActorError> {
        self.global(&self.accounts, NodeMsg::Accounts, build).await
    }

    /// Calls the node-global OAuth actor, waiting out a restart.
    pub async fn oauth<R: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<R>) -> OAuthMsg,
    ) -> Result<R, ActorError> {
        self.global(&self.oauth, NodeMsg::OAuth, build).await
    }

    /// Calls a node-global actor through its cached handle, asking the root for it only when
    /// it is unknown or went away.
    async fn global<M: Message, R: Send + 'static>(
        &self,
        cache: &RwLock<Option<ActorRef<M>>>,
        ask_root: fn(RpcReplyPort<ActorRef<M>>) -> NodeMsg,
        build: impl Fn(RpcReplyPort<R>) -> M,
    ) -> Result<R, ActorError> {
        let resolve = || async move {
            let cached = cache.read().unwrap_or_else(|e| e.into_inner()).clone();
            match cached {
                Some(a) => Ok(a),
                None => {
                    let a = self.ask(&self.root, ask_root).await?;
                    *cache.write().unwrap_or_else(|e| e.into_inner()) = Some(a.clone());
                    Ok(a)
                }
            }
        };
        let forget = || {
            *cache.write().unwrap_or_else(|e| e.into_inner()) = None;
        };
        self.call_with_retry(resolve, forget, build).await
    }

    /// Resolves the target and calls it. Only a message that was never delivered (its target
    /// had been passivated or had crashed) is sent again, after resolving the target afresh
    /// (`forget` drops any cached handle first); a delivered message is never repeated.
    async fn call_with_retry<M: Message, R: Send + 'static, Resolved>(
        &self,
        resolve: impl Fn() -> Resolved,
        forget: impl Fn(),
        build: impl Fn(RpcReplyPort<R>) -> M,
    ) -> Result<R, ActorError>
    where
        Resolved: Future<Output = Result<ActorRef<M>, ActorError>>,
    {
        let mut last = String::from("no attempt made");
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
            }
            let target = match resolve().await {
                Ok(t) => t,
                Err(ActorError::Unavailable(e)) => {
                    last = e;
                    continue;
                }
                Err(other) => return Err(other),
            };
            match self.attempt(&target, &build).await {
                Attempt::Done(result) => return result,
                Attempt::Undelivered(e) => {
                    forget();
                    last = e;
                }
            }
        }
        Err(ActorError::Unavailable(last))
    }

    /// Sends a fault-injection panic to the user's Library (operator action and tests).
    pub async fn crash_library(&self, user: UserId) -> Result<(), ActorError> {
        let handles = self.user(user).await?;
        handles
            .library
            .send_message(LibraryMsg::InjectPanic)
            .map_err(|e| ActorError::Unavailable(e.to_string()))
    }

    /// Sends a fault-injection panic to the Accounts actor (operator action and tests).
    pub async fn crash_accounts(&self) -> Result<(), ActorError> {
        let accounts = self.ask(&self.root, NodeMsg::Accounts).await?;
        accounts
            .send_message(AccountsMsg::InjectPanic)
            .map_err(|e| ActorError::Unavailable(e.to_string()))
    }

    /// Every live actor on every node (one node for now).
    pub fn actors(&self) -> Vec<ActorInfo> {
        self.roster.snapshot()
    }

    async fn attempt<M: Message, R: Send + 'static>(
        &self,
        target: &ActorRef<M>,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Attempt<R> {
        match target.call(build, Some(self.call_timeout)).await {
            Ok(CallResult::Success(r)) => Attempt::Done(Ok(r)),
            Ok(CallResult::Timeout) => Attempt::Done(Err(ActorError::Timeout)),
            Ok(CallResult::SenderError) => Attempt::Done(Err(ActorError::Interrupted)),
            Err(e) => Attempt::Undelivered(e.to_string()),
        }
    }

    async fn ask<M: Message, R: Send + 'static>(
        &self,
        target: &ActorRef<M>,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Result<R, ActorError> {
        match self.attempt(target, build).await {
            Attempt::Done(result) => result,
            Attempt::Undelivered(e) => Err(ActorError::Unavailable(e)),
        }
    }
}
