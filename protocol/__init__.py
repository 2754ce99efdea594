"""steer's wire vocabulary: every model that crosses a process boundary.

No asyncio, Redis or HTTP imports here; editor plugins can depend on this package
(or on the JSON Schema it exports) alone.

The names below are imported on first use (PEP 562): the models pull in pydantic
(~150 ms), and the `nudge` command imports `protocol.wire`, hence this package, in a
budget of a few milliseconds.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # `typing` alone costs 3.5 ms
if TYPE_CHECKING:
    from protocol.envelope import PROTOCOL_VERSION, Frame
    from protocol.events import Event
    from protocol.nudges import DeliveryPath, Nudge, NudgeMode
    from protocol.sessions import (
        AgentStatus,
        AgentSummary,
        SessionSpec,
        SessionSummary,
        StartSession,
        Usage,
    )
    from protocol.wire import MAX_NUDGE_BYTES

#: Where each name of `__all__` lives.
_HOMES = {
    "MAX_NUDGE_BYTES": "protocol.wire",
    "PROTOCOL_VERSION": "protocol.envelope",
    "AgentStatus": "protocol.sessions",
    "AgentSummary": "protocol.sessions",
    "DeliveryPath": "protocol.nudges",
    "Event": "protocol.events",
    "Frame": "protocol.envelope",
    "Nudge": "protocol.nudges",
    "NudgeMode": "protocol.nudges",
    "SessionSpec": "protocol.sessions",
    "SessionSummary": "protocol.sessions",
    "StartSession": "protocol.sessions",
    "Usage": "protocol.sessions",
}

__all__ = [
    "MAX_NUDGE_BYTES",
    "PROTOCOL_VERSION",
    "AgentStatus",
    "AgentSummary",
    "DeliveryPath",
    "Event",
    "Frame",
    "Nudge",
    "NudgeMode",
    "SessionSpec",
    "SessionSummary",
    "StartSession",
    "Usage",
]

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise type any typo as `object`

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'protocol' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # once: later lookups do not come back here
        return value
