//! The bot's background tasks — workers, the scheduler's timer, the reload watcher, the
//! dashboard's server, the failover's probe, short-lived sends — started through one
//! [`Background`] that `run_bot` owns: each sees its shutdown token, and stopping closes
//! the tracker and waits for all of them, so nothing is left running unseen.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where background tasks are started, and how they are stopped. Cheap to clone.
#[derive(Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    /// Tasks stopped by `shutdown` (cancelled by a signal, or by [`Self::stop`]).
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// Cancelled when the bot stops: long-running tasks end on it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `task` in the background, tracked: it must end by itself, or on
    /// [`Self::shutdown`].
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Runs `task` until it ends or the bot stops, whichever comes first (a task that knows
    /// nothing of shutdown: a probe, a send).
    pub fn spawn_until_shutdown(&self, task: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = task => {}
                () = shutdown.cancelled() => {}
            }
        });
    }

    /// Stops everything: cancels the shutdown token and waits up to `patience` for every
    /// task to end. False if some were still running then (they are left to the runtime's
    /// own shutdown).
    pub async fn stop(&self, patience: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout(patience, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                running = self.tracker.len(),
                ?patience,
                "background tasks still running at shutdown"
            );
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_and_waits_for_every_task() {
        let background = Background::new(CancellationToken::new());
        let token = background.shutdown().clone();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        // One that watches the token and cleans up after it, one that knows nothing of it.
        let tx = done_tx.clone();
        background.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send("watcher");
        });
        background.spawn_until_shutdown(std::future::pending());
        assert!(background.stop(Duration::from_secs(1)).await);
        assert_eq!(done_rx.recv().await, Some("watcher"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_shutdown_is_reported() {
        let background = Background::new(CancellationToken::new());
        background.spawn(std::future::pending());
        assert!(!background.stop(Duration::from_secs(1)).await);
    }
}
