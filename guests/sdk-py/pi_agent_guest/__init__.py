"""The SDK for pi-agent pipeline guests written in Python (WIT ``pi-agent:pipeline@0.3.0``).

A Python guest is a directory under ``guests/`` holding ``app.py``, which defines a class
named ``Formatter`` (runs before the LLM), ``Shaper`` (runs on its reply) or both::

    # guests/py-shout/app.py
    import pi_agent_guest as pi


    class Formatter(pi.Formatter):
        def format(self, ctx: pi.ChatContext, prompt: pi.Prompt) -> pi.Outcome:
            last = prompt.messages[-1]
            if "password" in last.content:
                return pi.reject("Please don't send passwords here.")
            last.content = last.content.upper() + pi.config("suffix", "")
            return pi.carry_on(prompt)

``just build-guest py-shout`` builds it into ``guests/dist/py-shout.wasm`` with
componentize-py; the build reads which of the two classes ``app.py`` defines and builds
the matching world.

The types are the generated bindings of ``wit/v0.3.0/pipeline.wit`` (dataclasses and
enums; read the WIT for what each field means): ``Prompt``, ``ChatMessage``, ``Role``,
``Options``, ``Reply``, ``TextFormat``, ``ChatContext``, ``ScheduledRun``. A formatter
returns an outcome made by ``carry_on``, ``answer`` or ``reject``; a shaper returns a
``Reply`` (``plain(text)``, ``html(text)``).

Beyond that: ``config`` reads the stage's ``[stage.config]``, ``log`` writes to the host's
log, ``http`` fetches from the origins the stage is granted, ``kv`` is the stage's private
key-value store (when granted), and ``ask_for_json`` / ``ask_for_schema`` / ``parse_json``
handle structured output. ``print`` goes to the host's
log too, tagged with the stage. Each call runs in a fresh instance: module-level state
does not survive from one message to the next (use ``kv``).
"""

import json
import tomllib
from typing import Any, Optional, TypeVar, Union

from wit_world.imports import host as _host
from wit_world.imports.types import (
    ChatContext,
    ChatMessage,
    Options,
    Outcome,
    Outcome_Prompt,
    Outcome_Reject,
    Outcome_Reply,
    Prompt,
    Reply,
    ResponseFormat_Json,
    ResponseFormat_Schema,
    Role,
    ScheduledRun,
    TextFormat,
)

from . import http, kv, log

__all__ = [
    "ChatContext",
    "ChatMessage",
    "Formatter",
    "Options",
    "Outcome",
    "Prompt",
    "Reply",
    "Role",
    "ScheduledRun",
    "Shaper",
    "TextFormat",
    "answer",
    "ask_for_json",
    "ask_for_schema",
    "carry_on",
    "config",
    "html",
    "http",
    "kv",
    "log",
    "parse_json",
    "plain",
    "reject",
]


class Formatter:
    """A stage that runs before the LLM: it may rewrite the prompt (``carry_on``), answer
    the user itself (``answer``; the LLM is not asked, shapers still run) or refuse the
    message (``reject``). Subclass it as ``Formatter`` in ``app.py``."""

    def format(self, ctx: ChatContext, prompt: Prompt) -> Outcome:
        raise NotImplementedError("a Formatter overrides format(self, ctx, prompt)")


class Shaper:
    """A stage that runs on the LLM's reply: called with ``done = False`` for the partial
    text while it streams in (it may end mid-word, inside unclosed Markdown) and once with
    ``done = True`` for the complete reply. Subclass it as ``Shaper`` in ``app.py``."""

    def shape(self, ctx: ChatContext, prompt: Prompt, response: Reply, done: bool) -> Reply:
        raise NotImplementedError("a Shaper overrides shape(self, ctx, prompt, response, done)")


def carry_on(prompt: Prompt) -> Outcome:
    """Go on with ``prompt``: to the next formatter, then the LLM."""
    return Outcome_Prompt(prompt)


def answer(reply: Union[Reply, str]) -> Outcome:
    """Answer the user with ``reply`` (text is plain); the LLM is not asked."""
    return Outcome_Reply(plain(reply) if isinstance(reply, str) else reply)


def reject(reason: str) -> Outcome:
    """Refuse the message; the user reads ``reason``."""
    return Outcome_Reject(reason)


def plain(text: str) -> Reply:
    """A reply shown exactly as written."""
    return Reply(text, TextFormat.PLAIN)


def html(text: str) -> Reply:
    """A reply in Telegram's HTML subset (escape ``<``, ``>`` and ``&`` elsewhere)."""
    return Reply(text, TextFormat.HTML)


T = TypeVar("T")
_UNSET: Any = object()


def config(key: str, default: T = _UNSET) -> Any:
    """This stage's ``[stage.config]`` value for ``key``.

    Without ``default``: the value as text, or ``None`` when it is not set (TOML values
    that are not strings come as their TOML text: ``42``, ``true``, ``["a", "b"]``).
    With ``default``: the value parsed as the default's type (``bool``, ``int``,
    ``float``, ``list``, ``dict`` or ``str``), or ``default`` when it is missing; a value
    that does not parse is logged as a warning and ``default`` is used.
    """
    text = _host.config(key)
    if default is _UNSET:
        return text
    if text is None:
        return default
    try:
        return _parse(text, default)
    except (ValueError, TypeError, tomllib.TOMLDecodeError):
        log.warn(f"config key '{key}' has an invalid value '{text}'; using the default")
        return default


def _parse(text: str, default: T) -> T:
    if isinstance(default, str):
        return text  # type: ignore[return-value]
    # bool before int: a bool is an int in Python.
    kind = bool if isinstance(default, bool) else type(default)
    value = tomllib.loads(f"value = {text}")["value"]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}")
    return value


def ask_for_json(prompt: Prompt) -> None:
    """Asks the model to answer with a JSON value (Ollama's ``format``). Shapers then see
    only the complete answer (``done = True``)."""
    prompt.options.format = ResponseFormat_Json()


def ask_for_schema(prompt: Prompt, schema: Union[str, dict]) -> None:
    """Asks the model for JSON matching ``schema`` (a JSON Schema, as text or a dict)."""
    text = schema if isinstance(schema, str) else json.dumps(schema)
    prompt.options.format = ResponseFormat_Schema(text)


def parse_json(reply: Reply) -> Optional[Any]:
    """The reply's text parsed as JSON, or ``None`` when it is not JSON."""
    try:
        return json.loads(reply.text)
    except ValueError:
        return None
