"""``py-persona`` formatter: the persona formatter of ``guests/persona`` in Python. It puts
the configured system prompt in front of the conversation, whose history is the window the
host chose for the model's context; the same config, the same fixtures.

Config (``[stage.config]`` in ``pipeline.toml``):

- ``system_prompt``: text; none means no system message is added;
- ``fold_system_prompt``: ``true`` puts the system prompt at the top of the first user
  turn instead, for models whose chat template has no system role (Gemma 2);
- ``max_history_messages``, ``max_history_chars``: optional caps on the earlier turns kept
  (default: none). A cap drops the oldest turn each time the conversation grows past it, so
  every prompt starts differently and the model re-reads all of it: leave them unset.
"""

import sys
from dataclasses import dataclass
from typing import List, Optional

import pi_agent_guest as pi
from pi_agent_guest import ChatMessage, Role


@dataclass
class Settings:
    system_prompt: Optional[str]
    max_history_messages: int = sys.maxsize
    max_history_chars: int = sys.maxsize
    fold_system_prompt: bool = False

    @classmethod
    def from_config(cls) -> "Settings":
        system_prompt = pi.config("system_prompt")
        return cls(
            system_prompt=system_prompt if system_prompt and system_prompt.strip() else None,
            max_history_messages=pi.config("max_history_messages", sys.maxsize),
            max_history_chars=pi.config("max_history_chars", sys.maxsize),
            fold_system_prompt=pi.config("fold_system_prompt", False),
        )


def apply(settings: Settings, messages: List[ChatMessage]) -> List[ChatMessage]:
    """Rewrites ``messages`` (history, then the new message last) per ``settings``."""
    turns = [m for m in messages if m.role != Role.SYSTEM]
    if not turns:
        return [ChatMessage(Role.SYSTEM, settings.system_prompt)] if settings.system_prompt else []
    current = turns.pop()
    window = history_window(settings, turns) + [current]
    if settings.system_prompt is None:
        return window
    if settings.fold_system_prompt:
        window[0].content = f"{settings.system_prompt}\n\n{window[0].content}"
        return window
    return [ChatMessage(Role.SYSTEM, settings.system_prompt)] + window


def history_window(settings: Settings, turns: List[ChatMessage]) -> List[ChatMessage]:
    """The newest turns that fit both caps, oldest first, starting with a user turn (chat
    templates such as Gemma's expect user/assistant alternation to start with the user)."""
    chars = kept = 0
    for message in reversed(turns):
        if kept == settings.max_history_messages or chars + len(message.content) > settings.max_history_chars:
            break
        chars += len(message.content)
        kept += 1
    window = turns[len(turns) - kept :]
    first_user = next((i for i, m in enumerate(window) if m.role == Role.USER), len(window))
    return window[first_user:]


class Formatter(pi.Formatter):
    def format(self, ctx: pi.ChatContext, prompt: pi.Prompt) -> pi.Outcome:
        prompt.messages = apply(Settings.from_config(), prompt.messages)
        return pi.carry_on(prompt)
