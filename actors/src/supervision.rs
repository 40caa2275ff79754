//! Restart policy shared by every supervisor: how long to wait before bringing a failed child back.

use std::time::{Duration, Instant};

/// When a child fails, the first restart is immediate; each further failure within
/// `reset_after` of the last (re)start doubles the wait, from `base` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub base: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// One child's failure history under a [`RestartPolicy`].
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RestartPolicy,
    consecutive: u32,
    last_start: Instant,
}

impl Backoff {
    pub(crate) fn new(policy: RestartPolicy) -> Backoff {
        Backoff {
            policy,
            consecutive: 0,
            last_start: Instant::now(),
        }
    }

    /// The child (re)started now.
    pub(crate) fn started(&mut self) {
        self.last_start = Instant::now();
    }

    /// The child failed: how long to wait before restarting it.
    pub(crate) fn next_delay(&mut self) -> Duration {
        if self.last_start.elapsed() > self.policy.reset_after {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        if self.consecutive == 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (self.consecutive - 2).min(20);
        self.policy.base.saturating_mul(factor).min(self.policy.max)
    }
}

/// Sends `result` to the caller; if it is a storage failure, then fails the actor. After a
/// failed commit the actor's memory may disagree with the disk (the write may still land), so
/// the supervisor restarts it and it reloads the truth from the store.
pub(crate) fn reply_or_reload<T: Send + 'static, E: Send + 'static>(
    reply: ractor::RpcReplyPort<Result<T, E>>,
    result: Result<T, E>,
    is_storage_failure: impl Fn(&E) -> bool,
) -> Result<(), ractor::ActorProcessingErr> {
    let failed = result.as_ref().err().is_some_and(is_storage_failure);
    let _ = reply.send(result);
    if failed {
        return Err("a commit failed; restarting to reload state from the store".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new(RestartPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
            reset_after: Duration::from_secs(3600),
        });
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 500, 500]);
    }

    #[test]
    fn backoff_resets_after_a_stable_run() {
        let mut b = Backoff::new(RestartPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            reset_after: Duration::ZERO,
        });
        b.next_delay();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(b.next_delay(), Duration::ZERO);
    }
}
