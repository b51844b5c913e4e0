//! The history window: which earlier turns of a chat the model sees with a new message.
//!
//! The model server keeps the last prompt it evaluated (its KV cache) and, for the next one,
//! evaluates only what follows the longest prefix the two share. On a Pi that evaluation is
//! the whole wait before the first word (~20 prompt tokens/s). A window that slides by one
//! exchange per turn changes every prompt's *start*, so every turn re-reads all of it. This
//! window instead grows with each turn — the next prompt is the last one, its answer and the
//! new message — and when the next prompt would not fit the context, it is cut once, in one
//! large block, down to [`KEEP_AFTER_CUT`] of the budget: a dozen turns that hit the cache
//! follow each cut.
//!
//! Why a third: a cut re-reads what it keeps (`k·B` tokens for a budget `B`) and is followed
//! by `(1−k)·B / t` turns of `t` tokens each before the next one, so it adds `k/(1−k)·t` per
//! turn on top of the `t` every turn costs. Half (what Ollama's own context shift keeps)
//! doubles the cost of a turn; a third adds half of it, and still leaves the model several
//! exchanges to remember (`just bench-pi` measures both).

use crate::store::StoredMessage;

/// What a cut keeps of the prompt budget: the rest is room for the turns until the next cut.
pub const KEEP_AFTER_CUT: f64 = 1.0 / 3.0;

/// How much a prompt may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens for the whole prompt: history, the new message and what the pipeline adds.
    pub tokens: u32,
    /// Earlier messages at most (`HISTORY_MESSAGES`).
    pub messages: usize,
}

/// Where the window starts for the next prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Everything since the window's start still fits: the prompt continues the last one.
    Keep,
    /// The window starts at history id `first_id` from now on (an id past the last message
    /// when no earlier turn fits beside the new message).
    Cut { first_id: i64 },
}

/// The new message does not fit the context even without any history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// Tokens the new message takes, with what the pipeline adds.
    pub needed: u32,
    /// Tokens a prompt may take.
    pub limit: u32,
}

/// Plans the window for a new message: `history` is the chat's window so far (oldest
/// first), `tokens` what each of its messages takes, `fixed` what the new message and the
/// pipeline's additions take.
pub fn plan(
    history: &[StoredMessage],
    tokens: impl Fn(&StoredMessage) -> u32,
    fixed: u32,
    budget: Budget,
) -> Result<Plan, TooLong> {
    if fixed > budget.tokens {
        return Err(TooLong {
            needed: fixed,
            limit: budget.tokens,
        });
    }
    let costs: Vec<u32> = history.iter().map(tokens).collect();
    let total = costs.iter().sum::<u32>().saturating_add(fixed);
    if total <= budget.tokens && history.len() < budget.messages {
        return Ok(Plan::Keep);
    }
    let kept_tokens = (f64::from(budget.tokens) * KEEP_AFTER_CUT) as u32;
    let kept_messages = (budget.messages as f64 * KEEP_AFTER_CUT) as usize;
    // The newest messages that fit the kept share, starting with a user turn (chat
    // templates such as Gemma's expect the conversation to start with the user).
    let mut used = fixed;
    let mut first = history.len();
    for (index, cost) in costs.iter().enumerate().rev() {
        used = used.saturating_add(*cost);
        if used > kept_tokens || history.len() - index > kept_messages {
            break;
        }
        if history[index].message.role == crate::prompt::Role::User {
            first = index;
        }
    }
    let first_id = match history.get(first) {
        Some(message) => message.id,
        None => history.last().map_or(0, |last| last.id + 1),
    };
    Ok(Plan::Cut { first_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::{ChatMessage, Role};

    /// `turns` exchanges of a user message and an answer, each message costing `cost`.
    fn history(turns: usize) -> Vec<StoredMessage> {
        (0..turns * 2)
            .map(|i| StoredMessage {
                id: 100 + i as i64,
                message: ChatMessage::new(
                    if i % 2 == 0 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    format!("message {i}"),
                ),
            })
            .collect()
    }

    const BUDGET: Budget = Budget {
        tokens: 900,
        messages: 200,
    };

    #[test]
    fn the_window_grows_while_it_fits() {
        // 4 exchanges of 100-token messages and a 50-token message: 850 ≤ 900.
        assert_eq!(plan(&history(4), |_| 100, 50, BUDGET), Ok(Plan::Keep));
        assert_eq!(plan(&[], |_| 100, 900, BUDGET), Ok(Plan::Keep));
    }

    #[test]
    fn an_overflow_cuts_to_a_third_at_a_user_turn() {
        // 5 exchanges: 1000 + 50 > 900. A third of 900 is 300: the new message (50) and
        // two messages (200) fit; the third newest would make 350. The two newest are an
        // answer and its question: the window starts at that question.
        let history = history(5);
        assert_eq!(
            plan(&history, |_| 100, 50, BUDGET),
            Ok(Plan::Cut {
                first_id: history[8].id
            })
        );
        assert_eq!(
            plan(&history, |_| 190, 50, BUDGET),
            Ok(Plan::Cut {
                first_id: history[10 - 1].id + 1
            }),
            "one 190-token answer fits, but not with its question: nothing is kept"
        );
    }

    #[test]
    fn the_message_count_cuts_in_blocks_too() {
        let budget = Budget {
            tokens: 10_000,
            messages: 12,
        };
        let history = history(6);
        // 12 earlier messages: the new one would make 13.
        assert_eq!(
            plan(&history, |_| 10, 10, budget),
            Ok(Plan::Cut {
                first_id: history[8].id
            }),
            "a third of 12 is 4 messages"
        );
        assert_eq!(plan(&history[2..], |_| 10, 10, budget), Ok(Plan::Keep));
    }

    #[test]
    fn a_message_too_long_for_the_context_is_refused() {
        assert_eq!(
            plan(&history(1), |_| 10, 901, BUDGET),
            Err(TooLong {
                needed: 901,
                limit: 900
            })
        );
    }

    #[test]
    fn consecutive_turns_keep_their_start_until_the_next_cut() {
        // A conversation of 30-token questions and 70-token answers against the budget:
        // between two cuts every plan keeps the window, and cuts are several turns apart.
        let mut stored: Vec<StoredMessage> = Vec::new();
        let mut start = 0usize;
        let mut cuts = Vec::new();
        for turn in 0..60 {
            let window: Vec<StoredMessage> = stored[start..].to_vec();
            let cost = |m: &StoredMessage| if m.message.role == Role::User { 30 } else { 70 };
            match plan(&window, cost, 30, BUDGET).unwrap() {
                Plan::Keep => {}
                Plan::Cut { first_id } => {
                    start = stored.iter().position(|m| m.id == first_id).unwrap();
                    cuts.push(turn);
                }
            }
            for role in [Role::User, Role::Assistant] {
                let id = stored.len() as i64;
                stored.push(StoredMessage {
                    id,
                    message: ChatMessage::new(role, "…"),
                });
            }
        }
        let gaps: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&gap| gap >= 6), "cuts at turns {cuts:?}");
    }
}
