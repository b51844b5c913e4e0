//! A job — a user's message, or a scheduled task's firing — as the service handles it: the
//! store's records (accepted [`NewJob`], stored until answered [`PendingJob`]), and the
//! guests' view of where it comes from, assembled when it is answered.

pub use crate::store::{Enqueued, JobKind, NewJob, Origin, PendingJob};

use crate::prompt::ChatContext;
use crate::zone::Zone;

/// Where `job` comes from, as the pipeline's guests see it, in the chat's `zone` of now.
pub fn context_of(job: &NewJob, zone: Zone) -> ChatContext {
    ChatContext {
        chat_id: job.chat_id,
        user_id: job.user_id,
        user_name: job.origin.user_name.clone(),
        language: job.origin.language.clone(),
        is_group: job.origin.is_group,
        unix_ms: job.origin.sent_unix_ms,
        time_zone: zone,
        scheduled: job.origin.scheduled,
    }
}
