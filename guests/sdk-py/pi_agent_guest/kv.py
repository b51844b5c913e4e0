"""This stage's private key-value store, kept in the bot's database across messages,
reloads and restarts. Granted in ``pipeline.toml`` with ``[stage.grants] kv_kib = 64``:
without the grant every read finds nothing and every write raises ``NotGranted``."""

from typing import List, Optional

from componentize_py_types import Err
from wit_world.imports import kv as _kv


class KvError(Exception):
    """The store could not do what was asked."""


class NotGranted(KvError):
    """The stage has no ``kv_kib`` grant."""


class QuotaExceeded(KvError):
    """The write would take the store past its quota (``quota_bytes``)."""

    def __init__(self, quota_bytes: int):
        super().__init__(f"the kv store's quota of {quota_bytes} bytes would be exceeded")
        self.quota_bytes = quota_bytes


class Unavailable(KvError):
    """The database could not be used; the message says why."""


def _raise(error: Err) -> None:
    value = error.value
    if isinstance(value, _kv.KvError_NotGranted):
        raise NotGranted("this stage has no kv grant (kv_kib in [stage.grants])") from None
    if isinstance(value, _kv.KvError_QuotaExceeded):
        raise QuotaExceeded(value.value) from None
    raise Unavailable(value.value) from None


def get(key: str) -> Optional[str]:
    """The value stored under ``key``, or ``None``."""
    try:
        return _kv.get(key)
    except Err as e:
        _raise(e)


def set(key: str, value: str) -> None:
    """Stores ``value`` under ``key``, replacing what was there."""
    try:
        _kv.set(key, value)
    except Err as e:
        _raise(e)


def delete(key: str) -> None:
    """Removes ``key`` (nothing happens if it is not there)."""
    try:
        _kv.delete(key)
    except Err as e:
        _raise(e)


def keys(prefix: str = "") -> List[str]:
    """The keys starting with ``prefix`` (all of them for ``""``), sorted."""
    try:
        return _kv.keys(prefix)
    except Err as e:
        _raise(e)
        return []
