//! A stored task's recurrence, read back from the spec the store keeps.

use super::{ParseError, Recurrence};
use crate::store::NewTask;

/// `task`'s recurrence, read from its stored spec; `None` for a one-off task.
pub fn recurrence_of(task: &NewTask) -> Option<Result<Recurrence, ParseError>> {
    task.recurrence.as_deref().map(Recurrence::from_spec)
}
