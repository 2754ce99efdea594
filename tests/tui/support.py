"""Shared by the dashboard tests: the recorded frames, frame builders, and a poll for
app state with a deadline (Pilot tests wait on conditions, never on fixed sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from protocol.envelope import Frame
from protocol.events import Event
from protocol.websocket import EventMessage, ServerMessage
from tui.model import DashboardModel
from tui.replay import feed, load

#: Recorded from a real daemon by tests/tui/record_frames.py.
FRAMES = Path(__file__).parent / "frames.jsonl"
#: Sessions with acceptance checks (`record_frames --checks`): one passed them on its
#: second attempt, one failed the same way twice and needs a human.
CHECK_FRAMES = Path(__file__).parent / "frames-checks.jsonl"
WAIT_S = 20.0


def recorded() -> list[ServerMessage]:
    return load(FRAMES)


def last_ts(messages: list[ServerMessage]) -> float:
    return max(m.frame.ts for m in messages if isinstance(m, EventMessage))


def recorded_model() -> DashboardModel:
    model = DashboardModel()
    feed(model, recorded())
    return model


def session_named(model: DashboardModel, name: str) -> str:
    return next(sid for sid, s in model.sessions.items() if s.spec.name == name)


def frames_of(sid: str) -> list[Frame]:
    return [m.frame for m in recorded() if isinstance(m, EventMessage) and m.frame.session == sid]


def frame(session: str, seq: int, event: Event, ts: float = 1000.0) -> Frame:
    return Frame(session=session, seq=seq, ts=ts + seq, event=event)


async def until(
    condition: Callable[[], object], *, what: str, within: float = WAIT_S, step: float = 0.02
) -> None:
    """Poll `condition` (app or model state) until it is true, or fail after `within`."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(step)
