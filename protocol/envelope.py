"""The frame envelope: one event of one session, numbered."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, TypeAdapter

from protocol.events import Event

PROTOCOL_VERSION = 1


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    v: int = PROTOCOL_VERSION
    session: str
    #: Per-session sequence number: 1, 2, 3... with no gaps.
    seq: int
    #: Unix time (seconds) at which the daemon recorded the event.
    ts: float
    event: Event


EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
