"""Fault switches: failures armed over the control API for the next N model requests.

Kinds (applied to ``POST /v1/messages`` only, after the request validated):

- ``rate_limit``: 429 ``rate_limit_error`` with a ``retry-after`` header;
- ``overloaded``: 529 ``overloaded_error`` (``retry-after`` too when one is given);
- ``midstream_error``: a stream sends ``message_start`` and then an ``error`` frame
  (``overloaded_error``); a non-streaming request gets the 529 instead;
- ``drop``: the connection is cut after ``message_start`` (or, without streaming,
  after part of the body).

Armed faults queue up in order; each request takes one from the head.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from daemon.simulator.errors import InvalidRequest

FaultKind = Literal["rate_limit", "overloaded", "midstream_error", "drop"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
_BY_NAME: dict[str, FaultKind] = {kind: kind for kind in FAULT_KINDS}


@dataclass(slots=True)
class Fault:
    kind: FaultKind
    #: Requests still to hit.
    count: int
    #: Seconds for the retry-after header; None sends none.
    retry_after: float | None = None

    @classmethod
    def from_json(cls, body: object) -> Fault:
        if not isinstance(body, dict):
            raise InvalidRequest("body: Input should be a valid dictionary")
        kind = body.get("kind")
        count = body.get("count", 1)
        retry_after = body.get("retry_after")
        fault_kind = _BY_NAME.get(kind) if isinstance(kind, str) else None
        if fault_kind is None:
            raise InvalidRequest(f"kind: Input should be one of {', '.join(FAULT_KINDS)}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequest("count: Input should be an integer of at least 1")
        if retry_after is not None and (
            not isinstance(retry_after, int | float)
            or isinstance(retry_after, bool)
            or retry_after < 0
        ):
            raise InvalidRequest("retry_after: Input should be a number of seconds")
        return cls(fault_kind, count, None if retry_after is None else float(retry_after))

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class FaultQueue:
    def __init__(self) -> None:
        self._armed: deque[Fault] = deque()

    def arm(self, fault: Fault) -> None:
        self._armed.append(fault)

    def clear(self) -> None:
        self._armed.clear()

    def pending(self) -> list[Fault]:
        return list(self._armed)

    def take(self) -> Fault | None:
        """The fault for the next request, if one is armed."""
        if not self._armed:
            return None
        fault = self._armed[0]
        fault.count -= 1
        if fault.count == 0:
            self._armed.popleft()
        return Fault(fault.kind, 1, fault.retry_after)


def retry_after_header(seconds: float) -> str:
    """Whole seconds as an integer, as the API sends them; fractions kept for fast tests."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
