"""A backend that plays recorded server messages into the model instead of a socket:
for snapshot tests and screenshots, where the picture must not depend on timing.

The recording is JSON Lines of `ServerMessage`s, as the daemon sends them (hello,
events, deltas). Commands are refused with a local ack: a replay is read-only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from protocol.commands import Ack, ErrorInfo
from protocol.websocket import SERVER_MESSAGE_ADAPTER, EventMessage, ServerMessage, TextDelta
from tui.link import LinkState
from tui.model import DashboardModel


def load(path: Path) -> list[ServerMessage]:
    return [
        SERVER_MESSAGE_ADAPTER.validate_json(line)
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def feed(model: DashboardModel, messages: Iterable[ServerMessage]) -> None:
    for message in messages:
        match message:
            case EventMessage(frame=frame):
                model.apply_frame(frame)
            case TextDelta():
                model.apply_delta(message)
            case _:
                pass


class Replay:
    """Feeds the messages once, then stays "connected" to `url`."""

    def __init__(self, model: DashboardModel, messages: list[ServerMessage], url: str) -> None:
        self.model = model
        self.messages = messages
        self.state = LinkState("connecting", url)
        self._url = url

    async def run(self) -> None:
        feed(self.model, self.messages)
        self.state = LinkState("connected", self._url, connections=1)
        await asyncio.Event().wait()

    async def call(self, kind: type[BaseModel], **fields: Any) -> Ack:
        error = ErrorInfo(code="unavailable", message="a replay is read-only")
        return Ack(id="replay", ok=False, error=error)

    def want_history(self, sid: str) -> None:
        self.model.track(sid)
