"""The daemon's log lines: one line per record, every value made visible and capped.

Modules log events as `log.info("nudge.rejected nudge=%s session=%s", ...)`, and some
values come from clients: a nudge's fields straight from the Redis stream, a session's
model, an error that quotes its input. A newline in one would start a line of its own
(a forged `daemon.stopped`); an escape sequence would act on the terminal that tails
the log; a megabyte would be logged whole. So each argument that is not a number shows
at most `VALUE_CHARS` characters, control characters escaped (`protocol.text`), then
`…(+N)` for the N characters left out; the message as a whole is escaped and capped the
same way at `MESSAGE_CHARS` (which catches a message logged without arguments). A
traceback (`exc_info`) stays multi-line after its message: it comes from the code.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

from protocol.text import visible

VALUE_CHARS = 200
MESSAGE_CHARS = 2_000


def capped(text: str, limit: int) -> str:
    """The first `limit` characters of `text` on one line, and how many were cut."""
    if len(text) <= limit:
        return visible(text)
    return f"{visible(text[:limit])}…(+{len(text) - limit})"


class _Value:
    """A log argument as `%s` and `%r` show it: capped and escaped. (Numbers are left
    as they are, for `%d` and `%.2f`.)"""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return capped(str(self.value), VALUE_CHARS)

    def __repr__(self) -> str:
        return capped(repr(self.value), VALUE_CHARS)


def _safe(value: object) -> object:
    return value if isinstance(value, int | float) else _Value(value)


class LogFormatter(logging.Formatter):
    """A `logging.Formatter` whose message is one line, its values capped."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers of the same record see it as it was logged.
        safe = copy.copy(record)
        args = record.args
        if isinstance(args, Mapping):
            safe.args = {key: _safe(value) for key, value in args.items()}
        elif args:
            safe.args = tuple(_safe(value) for value in args)
        safe.msg = capped(safe.getMessage(), MESSAGE_CHARS)
        safe.args = None
        return super().format(safe)
