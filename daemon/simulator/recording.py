"""The bounded log of requests the simulator answered, for ``GET /_sim/requests``."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Recorded:
    request_id: str
    path: str
    #: The request body as received (decoded JSON).
    body: object
    status: int = 200
    stream: bool = False
    #: The response id (``msg_...``) of a reply, if one was made.
    message_id: str | None = None
    #: The ``usage`` returned, output tokens included.
    usage: dict[str, object] | None = None
    #: The ``diagnostics`` returned (None is JSON null).
    diagnostics: dict[str, object] | None = None
    #: The fault switch this request hit, if any.
    fault: str | None = None
    #: For count_tokens: the count returned.
    input_tokens: int | None = None


class RequestLog:
    def __init__(self, limit: int) -> None:
        self._entries: deque[Recorded] = deque(maxlen=limit)

    def add(self, entry: Recorded) -> None:
        self._entries.append(entry)

    def to_json(self) -> list[dict[str, object]]:
        """Most recent last."""
        return [asdict(entry) for entry in self._entries]

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count
