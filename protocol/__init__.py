"""steer's wire vocabulary: every model that crosses a process boundary.

No asyncio, Redis or HTTP imports here; editor plugins can depend on this package
(or on the JSON Schema it exports) alone.
"""

from protocol.envelope import PROTOCOL_VERSION, Frame
from protocol.events import Event
from protocol.nudges import MAX_NUDGE_BYTES, DeliveryPath, Nudge, NudgeMode
from protocol.sessions import (
    AgentStatus,
    AgentSummary,
    SessionSpec,
    SessionSummary,
    StartSession,
    Usage,
)

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
