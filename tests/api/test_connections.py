"""Many readers at once. Follow streams are hub subscribers: once live they hold no
Redis connection (no blocking XREAD per client), a follower that falls behind goes on
from the store with no gap and no repeat, and a real daemon with a small reader pool
serves a crowd of websocket subscribers and followers while its agents commit, with
no `unavailable` and no failed commit."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from daemon.follow import follow
from daemon.hub import Hub
from daemon.paths import DAEMON_FILE, TOKEN_FILE
from daemon.redis_server import RedisServer
from daemon.store import Store
from protocol.envelope import Frame
from protocol.events import AgentStatusChanged
from protocol.sessions import SessionSpec
from protocol.websocket import PATH, SUBPROTOCOL
from tests.api.support import WsClient, consecutive, seqs
from tests.fixtures.api import MakeDaemon
from tests.fixtures.daemon import is_status, own
from tests.fixtures.steer_process import StartSteerDaemon


async def eventually(check: Callable[[], Any], what: str, within: float = 30.0) -> None:
    """Wait until `check()` is true (re-checked as the event loop runs other tasks)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Follower:
    """One `GET .../events?follow=true`, read in a task of its own."""

    def __init__(self, http: httpx.AsyncClient, sid: str) -> None:
        self.sid = sid
        self.frames: list[Frame] = []
        self.task = asyncio.create_task(self._read(http))

    async def _read(self, http: httpx.AsyncClient) -> None:
        path = f"/v1/sessions/{self.sid}/events"
        async with http.stream("GET", path, params={"follow": "true"}) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line.strip():
                    self.frames.append(Frame.model_validate_json(line))

    def reached(self, seq: int) -> bool:
        if self.task.done():
            self.task.result()  # its failure, if it failed
            raise AssertionError(f"the follow stream of {self.sid} ended")
        return bool(self.frames) and self.frames[-1].seq >= seq


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_followers_hold_no_redis_connection_and_get_every_frame(
    make_daemon: MakeDaemon, private_redis: RedisServer, tmp_path: Path
) -> None:
    daemon = await make_daemon(redis_url=private_redis.url)
    async with daemon.ws() as ws:
        spec = SessionSpec.model_validate(
            await ws.ok("start", task="[scenario:short] followed", workdir=str(tmp_path))
        )
        await ws.ok("subscribe", sessions=[spec.id])
        first = await ws.frames_until(is_status("idle"))
        followers = [Follower(daemon.http, spec.id) for _ in range(40)]
        try:
            await eventually(lambda: all(f.reached(first[-1].seq) for f in followers), "replay")
            async with Redis.from_url(private_redis.url, decode_responses=True) as redis:
                clients = await redis.info("clients")
            # Only the nudge consumer's XREADGROUP blocks: a live follower holds no
            # connection (those its replay used are back in the readers' pool).
            assert clients["blocked_clients"] <= 1, clients

            await ws.ok("nudge", session=spec.id, text="keep going")
            later = await ws.frames_until(is_status("idle"))
            await eventually(lambda: all(f.reached(later[-1].seq) for f in followers), "live")
        finally:
            await cancel_all([f.task for f in followers])
    for f in followers:
        assert seqs(f.frames) == seqs(first + later) and consecutive(f.frames)


async def test_a_follower_that_falls_behind_goes_on_from_the_store(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    sid = "s-behind"
    hub = Hub(store, buffer=4, page=3)
    event = AgentStatusChanged(agent="root", status="running")
    await own(store, sid)
    await store.append_events(sid, [event] * 5)
    lines: AsyncIterator[bytes] = follow(hub, sid, 0)

    async def read(count: int) -> list[int]:
        got: list[int] = []
        async with asyncio.timeout(10):
            while len(got) < count:
                line = await anext(lines)
                if line.strip():
                    got.append(Frame.model_validate_json(line).seq)
        return got

    try:
        received = await read(5)  # replayed through a buffer of 4, in pages of 3
        [sub] = hub.subscribers

        def live() -> bool:
            f = sub.follow_of(sid)
            return f is not None and f.live

        await eventually(live, "the follower to go live")
        with caplog.at_level(logging.INFO, logger="steer.hub"):
            # Ten frames while the client reads nothing: the fifth finds the buffer full.
            hub.publish(await store.append_events(sid, [event] * 10))
            received += await read(10)
        assert "hub.resync session=s-behind seq=9" in caplog.text
        hub.publish(await store.append_events(sid, [event] * 2))
        received += await read(2)
    finally:
        await lines.aclose()  # type: ignore[attr-defined]
    assert received == list(range(1, 18))
    assert hub.subscribers == []  # the follower's subscriber left with it


@pytest.mark.timeout(120)
async def test_crowds_of_readers_share_a_small_pool_while_agents_commit(
    start_steer_daemon: StartSteerDaemon, tmp_path: Path
) -> None:
    daemon = start_steer_daemon(STEER_REDIS_MAX_CONNECTIONS="4")
    sids = []
    for n in range(2):
        run = daemon.cli("run", f"[scenario:steady] load {n}", "--workdir", str(tmp_path))
        assert run.returncode == 0, run.stderr
        sids.append(run.stdout.strip())
    url = json.loads((daemon.home / DAEMON_FILE).read_text())["url"]
    auth = {"Authorization": f"Bearer {(daemon.home / TOKEN_FILE).read_text().strip()}"}
    subscribers: list[tuple[str, list[Frame]]] = []
    readers: list[asyncio.Task[None]] = []

    async def subscribe(stack: AsyncExitStack, sid: str) -> None:
        conn = await stack.enter_async_context(
            connect(
                url.replace("http", "ws", 1) + PATH,
                additional_headers=auth,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                max_queue=None,
            )
        )
        client = WsClient(conn)
        await client.read_hello()
        ack = await client.command("subscribe", sessions=[sid], since={sid: 0})
        assert ack.ok, ack.error  # never `unavailable`: a busy pool is waited for
        frames: list[Frame] = []
        subscribers.append((sid, frames))
        while True:
            frames.append(await client.next_event())  # a resync would fail here

    limits = httpx.Limits(max_connections=None)
    async with (
        AsyncExitStack() as stack,
        httpx.AsyncClient(base_url=url, headers=auth, timeout=30, limits=limits) as http,
    ):
        followers = [Follower(http, sids[n % 2]) for n in range(50)]
        readers = [asyncio.create_task(subscribe(stack, sids[n % 2])) for n in range(100)]
        try:
            await eventually(lambda: len(subscribers) == 100, "every subscription's ack")
            # Ten more frames per session, committed while every reader is connected.
            targets = {}
            for sid in sids:
                summary = (await http.get(f"/v1/sessions/{sid}")).json()
                targets[sid] = summary["last_seq"] + 10

            def everyone_has_them() -> bool:
                for task in readers:
                    if task.done():
                        task.result()
                received = [(f.sid, f.frames) for f in followers] + subscribers
                return all(frames and frames[-1].seq >= targets[sid] for sid, frames in received)

            await eventually(everyone_has_them, "every reader to get the new frames", 60)
        finally:
            await cancel_all(readers + [f.task for f in followers])
    for _, frames in [(f.sid, f.frames) for f in followers] + subscribers:
        assert consecutive(frames), seqs(frames)[:20]
    log = (daemon.home / "daemon.log").read_text()
    for failure in ("agent.commit_failed", "ws.unavailable", "hub.replay_failed"):
        assert failure not in log
