"""``py-redact`` shaper: hides secrets a model should never post in a chat, whatever it
was asked or shown — Telegram bot tokens, API keys, card numbers (Luhn-checked) and IBANs
(checksum-checked) — each replaced by a mask such as ``[card number hidden]``. Put it
before ``telegram-html``: it reads the model's own text.

While a reply streams in (``done`` is false) the unfinished end of the text — its last
word, and a run of digits before it — is held back until the next partial or the final
reply, so a secret is never shown half-written before it can be recognised.

Config (``[stage.config]``):

- ``kinds``: which secrets to hide, any of ``["token", "key", "card", "iban"]`` (default:
  all);
- ``mask``: what replaces one (default ``"[{kind} hidden]"``; ``{kind}`` becomes
  "bot token", "API key", "card number" or "IBAN").
"""

import re
from typing import Callable, Dict, List, Pattern, Tuple

import pi_agent_guest as pi

# Telegram's bot tokens: the bot's id, a colon, 35 characters.
TOKEN = re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b")
# Keys of OpenAI-style APIs, GitHub, Slack, AWS and Google, by their documented prefixes.
KEY = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35})"
)
# 13 to 19 digits, in groups separated by single spaces or dashes.
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
# A country code, two check digits, then 11 to 30 letters and digits, in groups of four.
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# What a partial reply holds back: a run of digit groups, then the last word.
UNFINISHED = re.compile(r"(?:\d[\d -]*)?\S*\Z")


def luhn_valid(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def card_length(found: str) -> int:
    """All of ``found`` if it is a card number, else nothing."""
    return len(found) if luhn_valid(re.sub(r"[ -]", "", found)) else 0


def iban_length(found: str) -> int:
    """The longest start of ``found`` that is an IBAN (the pattern may have run on into an
    upper-case word after it), or nothing."""
    for end in range(len(found), 14, -1):
        if found[end - 1] != " " and iban_valid(found[:end].replace(" ", "")):
            return end
    return 0


# Each kind: its name in the mask, its pattern, and how much of a match is that secret.
Length = Callable[[str], int]
KINDS: Dict[str, Tuple[str, Pattern[str], Length]] = {
    "token": ("bot token", TOKEN, len),
    "key": ("API key", KEY, len),
    "card": ("card number", CARD, card_length),
    "iban": ("IBAN", IBAN, iban_length),
}


def redact(text: str, kinds: List[str], mask: str) -> str:
    for kind in kinds:
        name, pattern, length = KINDS[kind]
        replacement = mask.replace("{kind}", name)

        def hide(match: "re.Match[str]") -> str:
            found = match.group()
            end = length(found)
            return replacement + found[end:] if end else found

        text = pattern.sub(hide, text)
    return text


def settings() -> Tuple[List[str], str]:
    kinds = pi.config("kinds", list(KINDS))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        pi.log.warn(f"unknown kinds {unknown} in config 'kinds'; known: {list(KINDS)}")
    return [k for k in kinds if k in KINDS], pi.config("mask", "[{kind} hidden]")


class Shaper(pi.Shaper):
    def shape(self, ctx: pi.ChatContext, prompt: pi.Prompt, response: pi.Reply, done: bool) -> pi.Reply:
        text = response.text
        if not done:
            text = text[: UNFINISHED.search(text).start()]
        kinds, mask = settings()
        return pi.Reply(redact(text, kinds, mask), response.format)
