//! `persona` formatter: puts the configured system prompt in front of the conversation.
//!
//! The history it gets is the window the host chose for the model's context: grown turn by
//! turn and cut rarely, in large blocks, so that the model server's prompt cache serves
//! most of every prompt. The persona keeps it as it is unless told to cap it.
//!
//! Config (`[stage.config]` in `pipeline.toml`):
//! - `system_prompt` — text; none means no system message is added;
//! - `fold_system_prompt` — `true` puts the system prompt at the top of the first user
//!   turn instead, for models whose chat template has no system role (Gemma 2);
//! - `max_history_messages`, `max_history_chars` — optional caps on the earlier turns kept
//!   (default: none). A cap drops the oldest turn each time the conversation grows past
//!   it: every prompt then starts differently and the model re-reads all of it, which on a
//!   Pi costs a minute per message. Leave them unset; `HISTORY_MESSAGES` and the model's
//!   context bound the host's window without that cost.

use pi_agent_guest::{ChatContext, ChatMessage, Formatter, Outcome, Prompt, Role};

pub struct Settings {
    pub system_prompt: Option<String>,
    pub max_history_messages: usize,
    pub max_history_chars: usize,
    pub fold_system_prompt: bool,
}

impl Settings {
    fn from_config() -> Self {
        Self {
            system_prompt: pi_agent_guest::config("system_prompt").filter(|s| !s.trim().is_empty()),
            max_history_messages: pi_agent_guest::config_or("max_history_messages", usize::MAX),
            max_history_chars: pi_agent_guest::config_or("max_history_chars", usize::MAX),
            fold_system_prompt: pi_agent_guest::config_or("fold_system_prompt", false),
        }
    }
}

/// Rewrites `messages` (history, then the new message last) per `settings`.
pub fn apply(settings: &Settings, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut turns: Vec<ChatMessage> = messages
        .into_iter()
        .filter(|m| m.role != Role::System)
        .collect();
    let Some(current) = turns.pop() else {
        return system_message(settings).into_iter().collect();
    };
    let mut window = history_window(settings, turns);
    window.push(current);

    match (&settings.system_prompt, settings.fold_system_prompt) {
        (None, _) => window,
        (Some(system), true) => {
            let first = &mut window[0];
            first.content = format!("{system}\n\n{}", first.content);
            window
        }
        (Some(system), false) => {
            let mut all = vec![ChatMessage::new(Role::System, system.clone())];
            all.extend(window);
            all
        }
    }
}

fn system_message(settings: &Settings) -> Option<ChatMessage> {
    settings
        .system_prompt
        .clone()
        .map(|s| ChatMessage::new(Role::System, s))
}

/// The newest turns that fit both caps, oldest first, starting with a user turn (chat
/// templates such as Gemma's expect user/assistant alternation to start with the user).
fn history_window(settings: &Settings, turns: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut chars = 0usize;
    let mut kept = 0;
    for message in turns.iter().rev() {
        let len = message.content.chars().count();
        if kept == settings.max_history_messages
            || chars.saturating_add(len) > settings.max_history_chars
        {
            break;
        }
        chars += len;
        kept += 1;
    }
    let mut window: Vec<ChatMessage> = turns.into_iter().rev().take(kept).collect();
    window.reverse();
    let first_user = window
        .iter()
        .position(|m| m.role == Role::User)
        .unwrap_or(window.len());
    window.split_off(first_user)
}

struct Persona;

impl Formatter for Persona {
    fn format(_ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        prompt.messages = apply(&Settings::from_config(), prompt.messages);
        Outcome::Prompt(prompt)
    }
}

pi_agent_guest::export_formatter!(Persona);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_messages: usize, max_chars: usize, fold: bool) -> Settings {
        Settings {
            system_prompt: Some("Be brief.".into()),
            max_history_messages: max_messages,
            max_history_chars: max_chars,
            fold_system_prompt: fold,
        }
    }

    fn chat(turns: &[(Role, &str)]) -> Vec<ChatMessage> {
        turns
            .iter()
            .map(|(r, c)| ChatMessage::new(*r, *c))
            .collect()
    }

    fn roles_and_text(messages: &[ChatMessage]) -> Vec<(Role, String)> {
        messages
            .iter()
            .map(|m| (m.role, m.content.clone()))
            .collect()
    }

    #[test]
    fn adds_system_prompt_first_and_replaces_earlier_ones() {
        let out = apply(
            &settings(10, 1000, false),
            chat(&[(Role::System, "old"), (Role::User, "hi")]),
        );
        assert_eq!(
            roles_and_text(&out),
            vec![
                (Role::System, "Be brief.".into()),
                (Role::User, "hi".into())
            ]
        );
    }

    #[test]
    fn folds_system_prompt_into_the_first_user_turn() {
        let out = apply(
            &settings(10, 1000, true),
            chat(&[(Role::User, "a"), (Role::Assistant, "b"), (Role::User, "c")]),
        );
        assert_eq!(out[0].content, "Be brief.\n\na");
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|m| m.role != Role::System));
    }

    #[test]
    fn history_is_bounded_by_count_and_chars_and_starts_with_user() {
        let history = chat(&[
            (Role::User, "1111"),
            (Role::Assistant, "2222"),
            (Role::User, "3333"),
            (Role::Assistant, "4444"),
            (Role::User, "now"),
        ]);
        let by_count = apply(&settings(3, 1000, false), history.clone());
        // 3 newest earlier turns are assistant, user, assistant: the leading assistant goes.
        assert_eq!(
            roles_and_text(&by_count[1..]),
            vec![
                (Role::User, "3333".into()),
                (Role::Assistant, "4444".into()),
                (Role::User, "now".into())
            ]
        );
        let by_chars = apply(&settings(10, 9, false), history);
        assert_eq!(
            roles_and_text(&by_chars[1..]),
            vec![
                (Role::User, "3333".into()),
                (Role::Assistant, "4444".into()),
                (Role::User, "now".into())
            ]
        );
    }

    #[test]
    fn without_caps_the_hosts_window_is_kept_whole() {
        let settings = Settings {
            system_prompt: Some("Be brief.".into()),
            max_history_messages: usize::MAX,
            max_history_chars: usize::MAX,
            fold_system_prompt: true,
        };
        let long = "x".repeat(50_000);
        let mut history: Vec<(Role, &str)> = Vec::new();
        for _ in 0..100 {
            history.extend([(Role::User, long.as_str()), (Role::Assistant, "ok")]);
        }
        history.push((Role::User, "now"));
        let out = apply(&settings, chat(&history));
        assert_eq!(out.len(), 201);
        assert!(out[0].content.starts_with("Be brief.\n\nxxx"));
    }

    #[test]
    fn the_new_message_is_kept_even_over_budget() {
        let out = apply(
            &settings(0, 0, true),
            chat(&[(Role::User, "old"), (Role::User, "a very long new message")]),
        );
        assert_eq!(
            roles_and_text(&out),
            vec![(Role::User, "Be brief.\n\na very long new message".into())]
        );
    }
}
