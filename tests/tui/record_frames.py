"""Record the protocol frames the snapshot tests replay (tests/tui/frames.jsonl).

Not a test: run it by hand against a fresh daemon when the protocol changes, then
review the snapshots (pytest tests/tui --snapshot-update). It plays a few sessions
that cover what the dashboard shows (a nudge where it landed, approvals, subagents
with one still streaming, a pause, a veto, a failure) and writes every event and
delta the websocket sent, with times moved to a fixed day and paths made neutral.
With `--checks` it plays sessions with acceptance checks instead (one that passes
them on its second attempt, one that fails the same way twice and needs a human)
into tests/tui/frames-checks.jsonl.

    STEER_HOME=$(mktemp -d) STEER_SIM_TOKEN_RATE=0 STEER_SIM_SCENARIOS=tests/scenarios \
        .venv/bin/steer daemon &
    STEER_HOME=... .venv/bin/python -m tests.tui.record_frames [--checks]
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from daemon.paths import DAEMON_FILE, TOKEN_FILE, steer_home
from daemon.service import SIMULATOR_KEY

OUT = Path(__file__).parent / "frames.jsonl"
CHECKS_OUT = Path(__file__).parent / "frames-checks.jsonl"
#: 2026-01-01 12:00:00 UTC: every recorded time is moved to start here.
BASE_TS = 1_767_268_800.0
WORKDIR = "/home/dev/demo"
TIME_KEYS = ("ts", "created_at", "sent_at", "finished_at")


class Recorder:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.lines: list[dict[str, Any]] = []
        self._ids = (f"r{n}" for n in itertools.count(1))
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[Any, asyncio.Future[None]]] = []

    async def read(self) -> None:
        async for raw in self.conn:
            message = json.loads(raw)
            if message["type"] == "ack":
                self._acks.pop(message["id"]).set_result(message)
            elif message["type"] in ("event", "delta"):
                self.lines.append(message)
                for predicate, future in list(self._waiters):
                    if not future.done() and predicate(message):
                        future.set_result(None)

    async def command(self, type: str, **fields: Any) -> Any:
        id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._acks[id] = future
        await self.conn.send(json.dumps({"id": id, "type": type, **fields}))
        ack = await asyncio.wait_for(future, 30)
        assert ack["ok"], ack
        return ack["result"]

    async def until(self, sid: str, kind: str, **fields: Any) -> None:
        def matches(message: dict[str, Any]) -> bool:
            if message["type"] != "event" or message["frame"]["session"] != sid:
                return False
            event = message["frame"]["event"]
            return event["type"] == kind and all(event.get(k) == v for k, v in fields.items())

        if any(matches(m) for m in self.lines):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((matches, future))
        await asyncio.wait_for(future, 60)

    async def deltas(self, sid: str, agent: str, count: int) -> None:
        def enough(message: dict[str, Any]) -> bool:
            seen = [
                m
                for m in self.lines
                if m["type"] == "delta" and m["session"] == sid and m["agent"] == agent
            ]
            return len(seen) >= count

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((enough, future))
        await asyncio.wait_for(future, 60)


@asynccontextmanager
async def recording(home: Path) -> AsyncIterator[Recorder]:
    """A recorder on the daemon's websocket, subscribed to every session's new frames."""
    info = json.loads((home / DAEMON_FILE).read_text())
    token = (home / TOKEN_FILE).read_text().strip()
    ws = info["url"].replace("http://", "ws://") + "/v1/ws"
    async with connect(ws, additional_headers={"Authorization": f"Bearer {token}"}) as conn:
        await conn.recv()  # hello
        rec = Recorder(conn)
        reader = asyncio.create_task(rec.read())
        await rec.command("subscribe", sessions="*", replay=False)
        try:
            yield rec
        finally:
            reader.cancel()


async def record_checks(home: Path, workdir: Path) -> list[dict[str, Any]]:
    """A session whose checks pass on the second attempt, and one that needs a human."""
    async with recording(home) as rec:
        fixed, stuck = workdir / "answer", workdir / "parser"
        fixed.mkdir()
        stuck.mkdir()
        (stuck / "parser.py").write_text("def parse(text): ...\n")
        answer = await rec.command(
            "start",
            task="[scenario:check-fix] write the right answer",
            workdir=str(fixed),
            name="right-answer",
            checks=["grep -qx right answer.txt"],
        )
        await rec.until(answer["id"], "agent.status", status="done")
        failing = "echo 'FAILED tests/test_parser.py::test_nested - KeyError: 1'; exit 1"
        parser = await rec.command(
            "start",
            task="[scenario:check-stubborn] make the parser tests pass",
            workdir=str(stuck),
            name="parser-tests",
            checks=["test -f parser.py", failing],
        )
        await rec.until(parser["id"], "agent.status", status="needs_human")
    return rec.lines


async def record(home: Path, workdir: Path) -> list[dict[str, Any]]:
    info = json.loads((home / DAEMON_FILE).read_text())
    async with recording(home) as rec:

        async def start(task: str, name: str, **extra: Any) -> str:
            spec = await rec.command("start", task=task, workdir=str(workdir), name=name, **extra)
            return str(spec["id"])

        # A failure first, alone: the simulator's faults hit whichever request comes next.
        async with httpx.AsyncClient(headers={"x-api-key": SIMULATOR_KEY}) as sim:
            fault = {"kind": "overloaded", "count": 3}
            (await sim.post(f"{info['simulator']}/_sim/faults", json=fault)).raise_for_status()
        failed = await start("[scenario:short] check the build", "flaky-build")
        await rec.until(failed, "agent.status", status="failed")

        demo = await start("Add a --verbose flag to cli.py and make the tests pass", "verbose-flag")
        await rec.until(demo, "agent.status", status="idle")
        await rec.command("nudge", session=demo, text="no casts, please", author="alice")
        await rec.until(demo, "nudge.delivered")
        await rec.until(demo, "agent.status", status="idle")

        files = await start("[scenario:approve] write the two files", "approvals", approve="writes")
        await rec.until(files, "approval.requested")
        await rec.until(files, "agent.status", status="waiting")

        paused = await start("[scenario:slow] explain the design", "slow-explainer")
        await rec.deltas(paused, "root", 5)
        await rec.command("pause", session=paused, now=True, author="bob")
        await rec.until(paused, "agent.status", status="paused")

        vetoed = await start("[scenario:slow-tool] wait for the signal", "waits-forever")
        await rec.until(vetoed, "tool.call")
        await rec.command("veto", session=vetoed, reason="not needed any more", author="bob")
        await rec.until(vetoed, "agent.status", status="vetoed")

        split = await start("[scenario:spawn] check both parts", "split-check")
        await rec.until(split, "agent.status", agent="a1", status="done")
        await rec.deltas(split, "a2", 8)
    return rec.lines


def normalize(lines: list[dict[str, Any]], workdir: str) -> list[dict[str, Any]]:
    first = min(m["frame"]["ts"] for m in lines if m["type"] == "event")

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: round(BASE_TS + v - first, 3) if k in TIME_KEYS else walk(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return value.replace(workdir, WORKDIR)
        return value

    return [walk(m) for m in lines]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="steer-record-"))
    if "--checks" in sys.argv[1:]:
        lines, out = asyncio.run(record_checks(steer_home(), workdir)), CHECKS_OUT
    else:
        for name, text in (("cli.py", "print('hi')\n"), ("test_cli.py", "def test(): pass\n")):
            (workdir / name).write_text(text)
        lines, out = asyncio.run(record(steer_home(), workdir)), OUT
    lines = normalize(lines, str(workdir))
    out.write_text("".join(json.dumps(m, separators=(",", ":")) + "\n" for m in lines))
    print(f"{len(lines)} messages -> {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
