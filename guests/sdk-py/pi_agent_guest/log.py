"""Lines in the host's log, tagged with this stage's name: ``log.info("fetched 3 items")``.
(``print`` reaches the log too, as the stage's stdout.) A call writes at most 64 lines and
16 KiB to the log; the rest is dropped and counted."""

from wit_world.imports.host import Level, log as _log


def trace(message: str) -> None:
    _log(Level.TRACE, message)


def debug(message: str) -> None:
    _log(Level.DEBUG, message)


def info(message: str) -> None:
    _log(Level.INFO, message)


def warn(message: str) -> None:
    _log(Level.WARN, message)


def error(message: str) -> None:
    _log(Level.ERROR, message)
