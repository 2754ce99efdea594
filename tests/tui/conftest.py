"""Fixtures for the dashboard tests: a real daemon in-process (the API tests' `Daemon`:
uvicorn, supervisor, hub and guard over the test's Redis and the simulator), and
`dashboard`, the Textual app attached to it over the real websocket, driven by Pilot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from protocol.commands import Ack
from protocol.sessions import AgentStatus
from tests.api.support import Daemon
from tests.tui.support import until
from tui.app import SteerApp
from tui.link import Link
from tui.model import AgentView, DashboardModel


async def start(daemon: Daemon, task: str, workdir: Path, **fields: Any) -> str:
    """Start a session over HTTP; its id."""
    response = await daemon.http.post(
        "/v1/sessions", json={"task": task, "workdir": str(workdir), **fields}
    )
    response.raise_for_status()
    return str(response.json()["id"])


class Dash:
    """The app under Pilot, with waits on its state."""

    def __init__(self, app: SteerApp, pilot: Pilot[None], link: Link) -> None:
        self.app = app
        self.pilot = pilot
        self.link = link
        self.model: DashboardModel = app.model

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)

    async def type(self, text: str) -> None:
        await self.pilot.press(*text)

    async def until(self, condition: Callable[[], object], what: str) -> None:
        await until(condition, what=what)
        await self.pilot.pause()

    def agent(self, sid: str, agent: str = "root") -> AgentView | None:
        return self.model.agent(sid, agent)

    def status(self, sid: str, agent: str = "root") -> AgentStatus | None:
        view = self.agent(sid, agent)
        return view.status if view else None

    async def status_is(self, sid: str, status: AgentStatus, agent: str = "root") -> None:
        await self.until(lambda: self.status(sid, agent) == status, f"{sid}/{agent} {status}")

    @property
    def selected(self) -> tuple[str, str] | None:
        row = self.app.table.selected
        return row.key if row else None

    async def select(self, sid: str, agent: str = "root") -> None:
        await self.until(lambda: self.app.table.select((sid, agent)), f"a row for {sid}/{agent}")
        await self.until(lambda: self.selected == (sid, agent), f"{sid}/{agent} selected")

    async def ack(self, label: str) -> Ack:
        """The ack of the first verb whose label starts with `label` not yet taken."""

        def found() -> tuple[str, Ack] | None:
            return next((a for a in self.app.acks if a[0].startswith(label)), None)

        await self.until(found, f"the ack of {label!r}")
        taken = found()
        assert taken is not None
        self.app.acks.remove(taken)
        return taken[1]

    def status_line(self) -> str:
        content = self.app.status_line.content
        return str(getattr(content, "plain", content))


@asynccontextmanager
async def dashboard(
    daemon: Daemon, *, select: str | None = None, size: tuple[int, int] = (160, 48)
) -> AsyncIterator[Dash]:
    model = DashboardModel()
    link = Link(
        model,
        url=daemon.url,
        token=daemon.token,
        backoff=lambda attempt: min(0.5, 0.05 * 2**attempt),
    )
    app = SteerApp(model, link, author="tester", select=select)
    async with app.run_test(size=size, notifications=True) as pilot:
        dash = Dash(app, pilot, link)
        await dash.until(lambda: link.connected, "the dashboard to connect")
        yield dash
