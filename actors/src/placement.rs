//! Placement: how the edge finds a user's actors, wherever they live.
//!
//! The edge never constructs or assumes a local actor; it asks [`Placement`] for handles on
//! every request. The home node of a user is a rendezvous hash over live members; with one node
//! that is always this node, and the same code path serves both. Calls made through
//! [`Placement::library`] / [`Placement::accounts`] retry when the target was passivated or
//! restarted between lookup and delivery, so every message sent through them must be idempotent
//! (saves carry their id, deletes of missing records succeed).

use std::future::Future;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::UserId;
use crate::accounts::AccountsMsg;
use crate::library::LibraryMsg;
use crate::node::NodeMsg;
use crate::roster::{ActorInfo, Roster};
use crate::user::{UserHandles, UserMsg};

/// Why a call to an actor did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    #[error("the service is temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("the service did not answer in time")]
    Timeout,
}

/// Cheap to clone; one per edge.
#[derive(Debug, Clone)]
pub struct Placement {
    root: ActorRef<NodeMsg>,
    roster: Roster,
    call_timeout: Duration,
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
        self.call_with_retry(|| async move { Ok(self.user(user).await?.library) }, build)
            .await
    }

    /// Calls the node-global Accounts actor, waiting out a restart.
    pub async fn accounts<R: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<R>) -> AccountsMsg,
    ) -> Result<R, ActorError> {
        self.call_with_retry(|| self.ask(&self.root, NodeMsg::Accounts), build)
            .await
    }

    /// Resolves the target and calls it; when the target went away before answering (it was
    /// passivated, or crashed and is being restarted), resolves it again and retries.
    async fn call_with_retry<M: Message, R: Send + 'static, Resolved>(
        &self,
        resolve: impl Fn() -> Resolved,
        build: impl Fn(RpcReplyPort<R>) -> M,
    ) -> Result<R, ActorError>
    where
        Resolved: Future<Output = Result<ActorRef<M>, ActorError>>,
    {
        let mut last = ActorError::Unavailable("no attempt made".into());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
            }
            let target = match resolve().await {
                Ok(t) => t,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match self.ask(&target, &build).await {
                Err(ActorError::Unavailable(e)) => last = ActorError::Unavailable(e),
                other => return other,
            }
        }
        Err(last)
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

    async fn ask<M: Message, R: Send + 'static>(
        &self,
        target: &ActorRef<M>,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Result<R, ActorError> {
        match target.call(build, Some(self.call_timeout)).await {
            Ok(CallResult::Success(r)) => Ok(r),
            Ok(CallResult::Timeout) => Err(ActorError::Timeout),
            Ok(CallResult::SenderError) => Err(ActorError::Unavailable(
                "the actor stopped before answering".into(),
            )),
            Err(e) => Err(ActorError::Unavailable(e.to_string())),
        }
    }
}
