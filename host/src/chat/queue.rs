//! The waiting line: bounded, first come first served, but never two jobs of one chat at
//! once (a chat's messages are answered in order).

use std::collections::{HashMap, VecDeque};

use tokio_util::sync::CancellationToken;

use super::PendingJob;
use crate::ids::ChatId;

/// What happened to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Queued; `ahead` jobs must finish before a worker is free for it (0: it starts now).
    Queued { ahead: usize },
    /// Already accepted earlier (Telegram delivered the update again); nothing to do.
    Duplicate,
    /// The queue is full; the message was not accepted.
    QueueFull,
}

pub struct Queue {
    capacity: usize,
    workers: usize,
    waiting: VecDeque<PendingJob>,
    /// Chats with a job in progress: how to cancel it, and whether its last word (final
    /// reply or notice) is out already (it only waits for Telegram and stores its turn).
    running: HashMap<ChatId, Running>,
}

struct Running {
    cancel: CancellationToken,
    delivered: bool,
}

impl Queue {
    pub fn new(capacity: usize, workers: usize) -> Self {
        Self {
            capacity,
            workers,
            waiting: VecDeque::new(),
            running: HashMap::new(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.waiting.len() >= self.capacity
    }

    pub fn push(&mut self, job: PendingJob) -> Accepted {
        // A job whose answer is out is not ahead of anyone: it ends in a moment.
        let answering = |chat_id: &ChatId| self.running.get(chat_id).is_some_and(|r| !r.delivered);
        let chat_busy = answering(&job.message.chat_id)
            || self
                .waiting
                .iter()
                .any(|j| j.message.chat_id == job.message.chat_id);
        let running = self.running.values().filter(|r| !r.delivered).count();
        self.waiting.push_back(job);
        // Jobs that must end before a worker frees up for this one; a chat's own earlier
        // message always goes first, free workers or not.
        let busy = (self.waiting.len() + running).saturating_sub(self.workers);
        Accepted::Queued {
            ahead: if chat_busy { busy.max(1) } else { busy },
        }
    }

    /// Jobs stored already — recovered at start, or a task's firing — are queued even past
    /// the capacity: they were accepted already.
    pub fn push_stored(&mut self, job: PendingJob) {
        if !self.waiting.iter().any(|j| j.id == job.id) {
            self.waiting.push_back(job);
        }
    }

    /// The oldest job `wanted` whose chat is not busy, marked running with a fresh cancel
    /// token (a child of `parent`, so shutdown cancels it too).
    pub fn take_next(
        &mut self,
        parent: &CancellationToken,
        wanted: impl Fn(&PendingJob) -> bool,
    ) -> Option<(PendingJob, CancellationToken)> {
        let index = self
            .waiting
            .iter()
            .position(|j| !self.running.contains_key(&j.message.chat_id) && wanted(j))?;
        let job = self.waiting.remove(index)?;
        let cancel = parent.child_token();
        let running = Running {
            cancel: cancel.clone(),
            delivered: false,
        };
        self.running.insert(job.message.chat_id, running);
        Some((job, cancel))
    }

    /// The chat's last word is on its way; its job only has its bookkeeping left.
    pub fn delivered(&mut self, chat_id: ChatId) {
        if let Some(running) = self.running.get_mut(&chat_id) {
            running.delivered = true;
        }
    }

    pub fn finish(&mut self, chat_id: ChatId) {
        self.running.remove(&chat_id);
    }

    pub fn cancel_running(&self, chat_id: ChatId) -> bool {
        self.running
            .get(&chat_id)
            .inspect(|running| running.cancel.cancel())
            .is_some()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{JobKind, NewJob};
    use crate::ids::{JobId, UserId};

    fn any(_: &PendingJob) -> bool {
        true
    }

    fn job(id: i64, chat: i64) -> PendingJob {
        let message = NewJob {
            chat_id: ChatId(chat),
            kind: JobKind::Message {
                message_id: id as i32,
            },
            user_id: UserId(chat),
            text: format!("m{id}"),
            origin: Default::default(),
            received_unix_ms: 0,
        };
        PendingJob::new(JobId(id), message)
    }

    #[test]
    fn one_job_per_chat_at_a_time_in_arrival_order() {
        let root = CancellationToken::new();
        let mut q = Queue::new(10, 1);
        assert_eq!(q.push(job(1, 100)), Accepted::Queued { ahead: 0 });
        assert_eq!(q.push(job(2, 100)), Accepted::Queued { ahead: 1 });
        assert_eq!(q.push(job(3, 200)), Accepted::Queued { ahead: 2 });
        assert_eq!(q.take_next(&root, any).unwrap().0.id, JobId(1));
        // Chat 100 is busy: its second message waits, chat 200 goes first.
        assert_eq!(q.take_next(&root, any).unwrap().0.id, JobId(3));
        assert!(q.take_next(&root, any).is_none());
        q.finish(ChatId(100));
        assert_eq!(q.take_next(&root, any).unwrap().0.id, JobId(2));
    }

    #[test]
    fn with_free_workers_nobody_is_told_to_wait_but_a_chat_keeps_its_order() {
        let root = CancellationToken::new();
        let mut q = Queue::new(10, 3);
        assert_eq!(q.push(job(1, 1)), Accepted::Queued { ahead: 0 });
        assert_eq!(q.push(job(2, 2)), Accepted::Queued { ahead: 0 });
        q.take_next(&root, any);
        assert_eq!(
            q.push(job(3, 1)),
            Accepted::Queued { ahead: 1 },
            "chat 1 is busy"
        );
        assert_eq!(
            q.push(job(4, 4)),
            Accepted::Queued { ahead: 1 },
            "three workers, four jobs"
        );
    }

    #[test]
    fn a_job_whose_answer_is_delivered_is_not_ahead_of_anyone() {
        let root = CancellationToken::new();
        let mut q = Queue::new(10, 1);
        q.push(job(1, 1));
        q.take_next(&root, any);
        assert_eq!(q.push(job(2, 2)), Accepted::Queued { ahead: 1 });
        q.delivered(ChatId(1));
        assert_eq!(
            q.push(job(3, 1)),
            Accepted::Queued { ahead: 1 },
            "job 2 is ahead"
        );
        let mut q = Queue::new(10, 1);
        q.push(job(1, 1));
        q.take_next(&root, any);
        q.delivered(ChatId(1));
        assert_eq!(q.push(job(2, 1)), Accepted::Queued { ahead: 0 });
    }

    #[test]
    fn a_worker_takes_only_the_jobs_it_wants_in_order() {
        let root = CancellationToken::new();
        let mut q = Queue::new(10, 1);
        q.push(job(1, 1));
        q.push(job(2, 2));
        q.push(job(3, 3));
        let even = |j: &PendingJob| j.message.chat_id.0 % 2 == 0;
        assert_eq!(q.take_next(&root, even).unwrap().0.id, JobId(2));
        assert!(q.take_next(&root, even).is_none());
        assert_eq!(q.take_next(&root, any).unwrap().0.id, JobId(1));
    }

    #[test]
    fn capacity_counts_waiting_jobs_and_recovery_is_exempt() {
        let mut q = Queue::new(1, 1);
        q.push(job(1, 1));
        assert!(q.is_full());
        q.push_stored(job(2, 2));
        q.push_stored(job(2, 2));
        assert_eq!(q.waiting(), 2);
    }

    #[test]
    fn cancelling_reaches_the_running_job_and_shutdown_reaches_all() {
        let root = CancellationToken::new();
        let mut q = Queue::new(10, 1);
        q.push(job(1, 1));
        q.push(job(2, 2));
        let (_, first) = q.take_next(&root, any).unwrap();
        let (_, second) = q.take_next(&root, any).unwrap();
        assert!(q.cancel_running(ChatId(1)));
        assert!(first.is_cancelled() && !second.is_cancelled());
        assert!(!q.cancel_running(ChatId(3)));
        root.cancel();
        assert!(second.is_cancelled());
    }
}
