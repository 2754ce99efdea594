"""Why the daemon refused a command: one exception carrying a protocol `ErrorCode`.

The API turns it into an HTTP error or a websocket `Ack` with the same code, so
every client sees the same refusal for the same mistake.
"""

from __future__ import annotations

from protocol.commands import ErrorCode

#: The HTTP status for each error code.
HTTP_STATUS: dict[ErrorCode, int] = {
    "bad_frame": 400,
    "invalid": 422,
    "too_large": 413,
    "rate_limited": 429,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "unknown_session": 404,
    "unknown_agent": 404,
    "not_pending": 409,
    "conflict": 409,
    "unavailable": 503,
    "internal": 500,
}


class CommandError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class UnknownSession(CommandError):
    def __init__(self, message: str) -> None:
        super().__init__("unknown_session", message)


class UnknownAgent(CommandError):
    def __init__(self, message: str) -> None:
        super().__init__("unknown_agent", message)
