//! The ids the rooms pass each other, each a type of its own so that one cannot stand in
//! for another (`end(JobId, Option<TaskId>)`, not two `i64`s). The number inside is
//! Telegram's (chats, users) or the database's (jobs, tasks).

use std::fmt;

/// A newtype over an `i64` id that prints as the number.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A Telegram chat: a private chat (the user's id) or a group (negative).
    ChatId
);
id!(
    /// A Telegram user.
    UserId
);
id!(
    /// A job in the store: a message or a task's firing, accepted and not yet done. Never
    /// reused.
    JobId
);
id!(
    /// A scheduled task, as `/tasks` lists it and `/cancel` takes it. Never reused.
    TaskId
);
