//! Ordered acknowledgements for actors that pipeline their commits.
//!
//! An actor using [`Partition::apply`](crate::store::Partition::apply) changes its memory and
//! the store at once and gets a [`Durable`] back. It must not answer before that resolves, yet
//! waiting inside its handler would cost one fsync per message. [`Acks`] is the way out: the
//! actor hands over the reply with the `Durable`, goes on with its next message, and a task
//! sends the replies in the order they were queued, each once its change is on disk. Answers to
//! reads queue behind pending writes, so nobody is told about a change that could still be lost.
//! A failed flush fails every queued reply and stops the actor, whose supervisor restarts it to
//! reload what really is on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::ActorCell;
use tokio::sync::mpsc;

use crate::store::{Durable, StoreError};

type Deliver = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;

/// The reply queue of one actor. Dropping it lets queued replies finish, then ends the task.
pub(crate) struct Acks {
    queue: mpsc::UnboundedSender<(Option<Durable>, Deliver)>,
    queued: Arc<AtomicUsize>,
}

impl Acks {
    /// Starts the queue for `actor` (stopped if a flush fails).
    pub(crate) fn start(actor: ActorCell) -> Acks {
        let (queue, mut rx) = mpsc::unbounded_channel::<(Option<Durable>, Deliver)>();
        let queued = Arc::new(AtomicUsize::new(0));
        let count = queued.clone();
        tokio::spawn(async move {
            let mut failed: Option<Arc<str>> = None;
            while let Some((durable, deliver)) = rx.recv().await {
                let result = match (&failed, durable) {
                    (Some(e), _) => Err(e.clone()),
                    (None, Some(d)) => d.await.map_err(|e: StoreError| Arc::from(e.to_string())),
                    (None, None) => Ok(()),
                };
                if let Err(e) = &result
                    && failed.is_none()
                {
                    tracing::error!(actor = %actor.get_id(), error = %e, "a commit did not become durable; restarting the actor");
                    actor.stop(Some(format!("a commit did not become durable: {e}")));
                    failed = Some(e.clone());
                }
                deliver(result);
                count.fetch_sub(1, Ordering::AcqRel);
            }
        });
        Acks { queue, queued }
    }

    /// Runs `deliver` once `durable` (and everything queued before it) is on disk, with the
    /// error if it never gets there.
    pub(crate) fn after(
        &self,
        durable: Durable,
        deliver: impl FnOnce(Result<(), Arc<str>>) + Send + 'static,
    ) {
        self.push(Some(durable), Box::new(deliver));
    }

    /// Runs `deliver` now if nothing is waiting to become durable, otherwise after all of it.
    pub(crate) fn answer(&self, deliver: impl FnOnce() + Send + 'static) {
        if self.queued.load(Ordering::Acquire) == 0 {
            deliver();
        } else {
            self.push(None, Box::new(move |_| deliver()));
        }
    }

    fn push(&self, durable: Option<Durable>, deliver: Deliver) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError((_, deliver))) = self.queue.send((durable, deliver)) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            deliver(Err("the reply queue is gone".into()));
        }
    }
}
