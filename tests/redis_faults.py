"""Redis faults under a live `steer daemon`: the user's side of the run, the faults, and
the checks afterwards.

Used by tests/daemon/test_redis_faults.py (short faults) and scripts/redis_faults (the
long ones). Only real parts: redis-server with AOF, `steer daemon` with its embedded
simulator, SIGKILL/SIGSTOP, and tests/faultproxy.py between the daemon and Redis.

`Traffic` is what a user does meanwhile: sessions of `[scenario:loop]` agents (tool
call after tool call), a stream of numbered nudges written straight to Redis (XADD
and a doorbell, as `nudge` does; a nudge is *acknowledged* once its XADD returned),
and one `GET /v1/sessions/{s}/events?follow=true` per session. While a fault holds
it polls `/v1/health` and `/v1/sessions` (`Outage`: what the user saw). `finish()`
then checks, from Redis and from what the followers received:
- every acknowledged nudge was applied exactly once, in the order it was sent, and
  the conversations keep the placement rules; no write with a stale lease epoch
  landed (tests/chaos.py `audit`);
- each session's event stream is numbered 1, 2, 3... and holds no event twice (a
  nudge received, applied or delivered, a model reply, a tool result);
- each follower received exactly that stream: every frame, once, in order;
- the daemon process is the one started (no crash, no restart), its log has no
  traceback, and its agents made progress after the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from daemon.keys import Keys
from daemon.paths import DAEMON_FILE, TOKEN_FILE
from daemon.redis_server import RedisServer
from protocol.nudges import Nudge
from tests.chaos import Report, audit, settle
from tests.faultproxy import FaultProxy

TASK = "[scenario:loop] redis faults {n}"
#: How long the sender's and the checks' Redis commands may take before they fail.
CLIENT_TIMEOUT_S = 1.0
POLL_S = 0.2
#: The proxy's delay per chunk, each way, when it is slow.
SLOW_S = 0.2
#: An API answer slower than this counts as an error: the API must not wait for Redis.
SLOW_API_S = 1.0
#: Log lines that must never appear in the daemon's log.
CRASH_MARKS = ("Traceback", "supervisor.task_died")
#: Log events counted for the report.
COUNTED = (
    "redis.down",
    "redis.up",
    "session.lost",
    "session.claimed",
    "agent.commit_failed",
    "agent.fenced",
    "intake.doorbell_down",
    "intake.read_failed",
    "ownership.redis_unavailable",
)


@dataclass
class Outage:
    """One fault, and what the daemon's API showed while it held."""

    fault: str
    held_s: float = 0.0
    #: `/v1/health` answered `redis: down` at least once.
    health_down: bool = False
    #: Some session summary carried `stale_since`.
    stale_seen: bool = False
    #: The fewest sessions `/v1/sessions` listed during the fault.
    fewest_listed: int | None = None
    #: Health requests that failed or were slow: it must keep answering, from memory.
    health_errors: list[str] = field(default_factory=list)
    #: Listing requests that failed or were slow.
    listing_errors: list[str] = field(default_factory=list)
    #: From the fault's end until /v1/health said Redis is up again.
    health_back_s: float | None = None
    #: From the fault's end until the next acknowledged nudge was applied.
    recovered_s: float | None = None
    #: Sessions dropped after the fault ended because a lease ran out or a write was
    #: fenced (with Redis reachable again, the daemon should keep what it claims).
    dropped_after: int = 0

    def line(self) -> str:
        back = "never" if self.health_back_s is None else f"{self.health_back_s:.1f} s"
        recovered = "never" if self.recovered_s is None else f"{self.recovered_s:.1f} s"
        return (
            f"{self.fault}: held {self.held_s:.1f} s; health down: {self.health_down}, "
            f"summaries stale: {self.stale_seen}, fewest sessions listed: "
            f"{self.fewest_listed}, health errors: {self.health_errors or 'none'}, listing "
            f"errors: {len(self.listing_errors)} {self.listing_errors[:1]}; health up again "
            f"after {back}; next nudge "
            f"applied after {recovered}; sessions dropped after: {self.dropped_after}"
        )


@dataclass
class FaultReport:
    outages: list[Outage] = field(default_factory=list)
    nudges_acknowledged: int = 0
    #: Sends that failed or timed out (not acknowledged; each applied at most once).
    nudges_refused: int = 0
    nudges_applied: int = 0
    frames: int = 0
    frames_followed: int = 0
    requests: int = 0
    log_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in self.log_counts.items() if v)
        return [
            *(outage.line() for outage in self.outages),
            f"nudges: {self.nudges_acknowledged} acknowledged, {self.nudges_applied} applied, "
            f"{self.nudges_refused} sends refused or timed out",
            f"events: {self.frames} in Redis, {self.frames_followed} received by followers; "
            f"model requests: {self.requests}",
            f"daemon log: {counts or 'nothing notable'}",
            f"problems: {len(self.problems)}",
            *(f"  - {p}" for p in self.problems[:50]),
        ]


class Traffic:
    """Sessions, nudges and followers against one live daemon (see the module doc)."""

    def __init__(
        self,
        home: Path,
        redis_url: str,
        prefix: str,
        *,
        pid: int,
        nudges_per_s: float = 4.0,
    ) -> None:
        self.home = home
        self.keys = Keys(prefix)
        self.pid = pid
        self._redis_url = redis_url
        self._period = 1 / nudges_per_s
        self.report = FaultReport()
        self.sids: list[str] = []
        #: Acknowledged nudge ids per session, in the order they were sent.
        self.sent: dict[str, list[str]] = defaultdict(list)
        #: Frames each follower received, in order.
        self.followed: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._sending = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        #: Set whenever a follower receives a frame.
        self._arrived = asyncio.Event()
        self.redis: Redis
        self.http: httpx.AsyncClient

    async def __aenter__(self) -> Traffic:
        # Short timeouts and no retries: a send that does not return is not acknowledged.
        self.redis = Redis.from_url(
            self._redis_url,
            decode_responses=True,
            socket_timeout=CLIENT_TIMEOUT_S,
            socket_connect_timeout=CLIENT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        info = json.loads((self.home / DAEMON_FILE).read_text())
        token = (self.home / TOKEN_FILE).read_text().strip()
        self.http = httpx.AsyncClient(
            base_url=info["url"], headers={"Authorization": f"Bearer {token}"}, timeout=5.0
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
        await self.redis.aclose()

    # -- the user's side --------------------------------------------------------

    async def start(self, workdir: Path, sessions: int = 2) -> None:
        """Start the sessions, follow each, send nudges, and wait until some land."""
        for n in range(sessions):
            work = workdir / f"w{n}"
            work.mkdir(parents=True, exist_ok=True)
            response = await self.http.post(
                "/v1/sessions", json={"task": TASK.format(n=n), "workdir": str(work)}
            )
            assert response.status_code == 201, f"{response.text}\n{self._log_tail()}"
            sid = response.json()["id"]
            self.sids.append(sid)
            self._tasks.append(asyncio.create_task(self._follow(sid)))
        self._tasks.append(asyncio.create_task(self._send()))
        await self.until_applied(within=30.0)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No nudge is sent meanwhile (one under way has returned)."""
        async with self._sending:
            yield

    async def until_applied(self, *, within: float) -> float | None:
        """Wait until a nudge acknowledged from now on is applied; how long it took."""
        began = time.monotonic()
        ids = {sid: len(sent) for sid, sent in self.sent.items()}
        while time.monotonic() - began < within:
            fresh = [(sid, sent[ids.get(sid, 0) :]) for sid, sent in list(self.sent.items())]
            for sid, nudge_ids in fresh:
                if nudge_ids and await self._applied(sid, nudge_ids[0]):
                    return time.monotonic() - began
            await asyncio.sleep(POLL_S)
        return None

    async def observe(self, outage: Outage, seconds: float) -> None:
        """Poll the daemon's health and its session list while a fault holds for
        `seconds` (apart: a slow list must not hold up the health checks)."""
        began = time.monotonic()

        async def every_poll(probe: Callable[[Outage], Awaitable[None]]) -> None:
            while time.monotonic() - began < seconds:
                await probe(outage)
                await asyncio.sleep(POLL_S)

        await asyncio.gather(every_poll(self._probe_health), every_poll(self._probe_listing))
        outage.held_s = time.monotonic() - began

    async def recovered(self, outage: Outage, *, within: float = 30.0) -> None:
        """After a fault: wait for the health to say Redis is up and a nudge to land."""
        began = time.monotonic()
        while time.monotonic() - began < within:
            health = await self._health()
            if health is not None and health.get("redis", "up") == "up":
                outage.health_back_s = time.monotonic() - began
                break
            await asyncio.sleep(POLL_S)
        waited = await self.until_applied(within=within)
        if waited is not None:
            outage.recovered_s = time.monotonic() - began
        self.report.outages.append(outage)

    async def keep_going(self, seconds: float) -> None:
        """Let the sessions and the nudges run on for `seconds` (a fault's duration)."""
        await asyncio.sleep(seconds)

    async def until_subscribed(self, count: int, *, within: float = 15.0) -> float | None:
        """Wait until the doorbell channel has `count` subscribers in Redis (a silenced
        connection still counts: Redis never heard of its end); how long it took."""
        began = time.monotonic()
        while time.monotonic() - began < within:
            [(_, subscribers)] = await self.redis.pubsub_numsub(self.keys.doorbell)
            if subscribers >= count:
                return time.monotonic() - began
            await asyncio.sleep(POLL_S)
        return None

    def log_mark(self) -> int:
        """Where the daemon's log ends now."""
        return (self.home / "daemon.log").stat().st_size

    def dropped_since(self, mark: int) -> int:
        """Sessions the daemon dropped since `mark` for a lease that ran out or a write
        that was fenced (not for want of Redis)."""
        with (self.home / "daemon.log").open("rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        return sum(
            1
            for line in text.splitlines()
            if "session.lost " in line and ("reason=lease lost" in line or "fenced" in line)
        )

    async def finish(self, *, settle_s: float = 30.0) -> FaultReport:
        """Stop sending, wait for every acknowledged nudge, and check everything."""
        report = self.report
        async with self._sending:
            self._stop.set()
        report.nudges_acknowledged = sum(len(ids) for ids in self.sent.values())
        await settle(self.redis, self.keys, self.sent, settle_s)
        audited = Report()
        await audit(self.redis, self.keys, self.sids, self.sent, audited)
        report.problems += audited.problems
        report.nudges_applied = audited.nudges_applied
        report.requests = audited.requests
        for sid in self.sids:
            stored = await self._frames(sid)
            report.frames += len(stored)
            report.problems += _stream_problems(sid, stored)
            await self._until_followed(sid, len(stored))
            followed = self.followed[sid]
            report.frames_followed += len(followed)
            report.problems += _follow_problems(sid, stored, followed)
        report.problems += self._daemon_problems()
        return report

    # -- internals --------------------------------------------------------------

    async def _send(self) -> None:
        number = 0
        while not self._stop.is_set():
            async with self._sending:
                if self._stop.is_set():
                    return
                sid = self.sids[number % len(self.sids)]
                number += 1
                nudge = Nudge(
                    nudge_id=f"n-{number:06d}",
                    session=sid,
                    text=f"fault nudge #{number}",
                    author="faults",
                    sent_at=time.time(),
                )
                try:
                    async with asyncio.timeout(CLIENT_TIMEOUT_S * 2):
                        await self.redis.xadd(self.keys.nudges(sid), nudge.to_fields())  # type: ignore[arg-type]
                except (RedisError, OSError, TimeoutError):
                    self.report.nudges_refused += 1  # may still land: then once
                else:
                    self.sent[sid].append(nudge.nudge_id)  # acknowledged: the XADD returned
                    with contextlib.suppress(RedisError, OSError, TimeoutError):
                        async with asyncio.timeout(CLIENT_TIMEOUT_S * 2):
                            await self.redis.publish(self.keys.doorbell, sid)
            await asyncio.sleep(self._period)

    async def _follow(self, sid: str) -> None:
        """Follow the session's events over HTTP, as `steer logs -f` does."""
        frames = self.followed[sid]
        while not self._stop.is_set():
            since = frames[-1]["seq"] if frames else 0
            params = {"follow": "true", "since": str(since)}
            try:
                async with self.http.stream(
                    "GET", f"/v1/sessions/{sid}/events", params=params, timeout=None
                ) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if line.strip():
                            frames.append(json.loads(line))
                            self._arrived.set()
            except httpx.HTTPError as exc:
                self.report.problems.append(f"{sid}: the event stream broke: {exc!r}")
                await asyncio.sleep(POLL_S)

    async def _until_followed(self, sid: str, count: int, within: float = 15.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(self.followed[sid]) < count:
                    self._arrived.clear()
                    await self._arrived.wait()

    async def _probe_health(self, outage: Outage) -> None:
        try:
            health = await self._get("/v1/health")
        except httpx.HTTPError as exc:
            outage.health_errors.append(repr(exc))
            return
        if health.get("redis") == "down":
            outage.health_down = True

    async def _probe_listing(self, outage: Outage) -> None:
        try:
            listed = await self._get("/v1/sessions")
        except httpx.HTTPError as exc:
            outage.listing_errors.append(repr(exc))
            return
        if any(s.get("stale_since") is not None for s in listed):
            outage.stale_seen = True
        mine = sum(1 for s in listed if s["spec"]["id"] in self.sids)
        if outage.fewest_listed is None or mine < outage.fewest_listed:
            outage.fewest_listed = mine

    async def _health(self) -> dict[str, Any] | None:
        try:
            health: dict[str, Any] = await self._get("/v1/health")
        except httpx.HTTPError:
            return None
        return health

    async def _get(self, path: str) -> Any:
        began = time.monotonic()
        response = await self.http.get(path)
        response.raise_for_status()
        if time.monotonic() - began > SLOW_API_S:
            slow = f"answered after {time.monotonic() - began:.1f} s"
            raise httpx.ReadTimeout(slow, request=response.request)
        return response.json()

    async def _applied(self, sid: str, nudge_id: str) -> bool:
        try:
            frames = await self._frames(sid)
        except (RedisError, OSError):
            return False
        return any(
            f["event"]["type"] == "nudge.applied" and f["event"]["nudge_id"] == nudge_id
            for f in frames
        )

    async def _frames(self, sid: str) -> list[dict[str, Any]]:
        entries = await self.redis.xrange(self.keys.events(sid))
        return [json.loads(fields["frame"]) for _, fields in entries]

    def _log_tail(self, lines: int = 40) -> str:
        text = (self.home / "daemon.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _daemon_problems(self) -> list[str]:
        problems = []
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            problems.append(f"the daemon (pid {self.pid}) is gone")
        text = (self.home / "daemon.log").read_text(errors="replace")
        problems += [f"the daemon's log has {mark!r}" for mark in CRASH_MARKS if mark in text]
        self.report.log_counts = {name: text.count(f"{name} ") for name in COUNTED}
        return problems


def _identity(frame: dict[str, Any]) -> tuple[str, ...] | None:
    """What makes an event happen once per session, if anything does."""
    event = frame["event"]
    kind, agent = event["type"], event["agent"]
    if kind == "nudge.received":
        return (kind, agent, event["nudge"]["nudge_id"])
    if kind in ("nudge.applied", "nudge.delivered"):
        return (kind, agent, event["nudge_id"])
    if kind == "model.reply":
        return (kind, event["message_id"])
    if kind == "tool.result":
        return (kind, event["call_id"])
    return None


def _stream_problems(sid: str, frames: list[dict[str, Any]]) -> list[str]:
    problems = []
    seqs = [f["seq"] for f in frames]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{sid}: the event stream is not numbered 1..{len(seqs)}")
    counts = Counter(key for f in frames if (key := _identity(f)) is not None)
    problems += [f"{sid}: {key} recorded {n} times" for key, n in counts.items() if n > 1]
    return problems


def _follow_problems(
    sid: str, stored: list[dict[str, Any]], followed: list[dict[str, Any]]
) -> list[str]:
    seqs = [f["seq"] for f in followed]
    if seqs != list(range(1, len(seqs) + 1)):
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1][:5]
        return [f"{sid}: the follower got seqs out of line (first breaks: {gaps})"]
    if len(followed) < len(stored):
        return [f"{sid}: the follower got {len(followed)} of {len(stored)} frames"]
    differ = [f["seq"] for f, s in zip(followed, stored, strict=False) if f != s]
    return [f"{sid}: followed frames differ from Redis's at seqs {differ[:5]}"] if differ else []


# -- the faults ------------------------------------------------------------------------


async def aof_drained(redis: Redis, within: float = 10.0) -> None:
    """Wait until Redis has written (and fsynced) its AOF buffer: every write it
    acknowledged so far survives a kill -9."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        info = await redis.info("persistence")
        if not info.get("aof_buffer_length") and not info.get("aof_pending_bio_fsync"):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the AOF did not drain")


async def kill_and_restart(traffic: Traffic, server: RedisServer, down_s: float) -> Outage:
    """kill -9 of redis-server; restarted on the same port and AOF after `down_s`."""
    outage = Outage(f"redis-server killed (-9) for {down_s:g} s")
    async with traffic.paused():  # what was acknowledged is on disk before the kill
        await aof_drained(traffic.redis)
        server.kill()
    try:
        await traffic.observe(outage, down_s)
    finally:
        await asyncio.to_thread(server.start)
    await traffic.recovered(outage)
    return outage


async def stop_and_continue(traffic: Traffic, server: RedisServer, stopped_s: float) -> Outage:
    """SIGSTOP of redis-server for `stopped_s`, then SIGCONT."""
    assert server.pid is not None
    outage = Outage(f"redis-server stopped (SIGSTOP) for {stopped_s:g} s")
    os.kill(server.pid, signal.SIGSTOP)
    try:
        await traffic.observe(outage, stopped_s)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    await traffic.recovered(outage)
    return outage


@dataclass(frozen=True)
class ProxyFault:
    name: str
    apply: Callable[[FaultProxy], Any]
    seconds: float
    #: Back slow rather than at once: a delay per chunk for `slow_s` after the fault.
    slow_s: float = 0.0


async def through_proxy(traffic: Traffic, proxy: FaultProxy, fault: ProxyFault) -> Outage:
    """Apply a proxy fault, hold it, then back to normal (first slow, if it says so)."""
    slow = f", then {SLOW_S * 1000:g} ms slow for {fault.slow_s:g} s" if fault.slow_s else ""
    outage = Outage(f"proxy {fault.name} for {fault.seconds:g} s{slow}")
    fault.apply(proxy)
    try:
        await traffic.observe(outage, fault.seconds)
        mark = traffic.log_mark()  # from here on Redis is reachable again
        if fault.slow_s:
            proxy.delay(SLOW_S)
            await traffic.keep_going(fault.slow_s)
    finally:
        proxy.normal()
    await traffic.recovered(outage)
    outage.dropped_after = traffic.dropped_since(mark)
    return outage


def _cut_and_refuse(proxy: FaultProxy) -> None:
    proxy.refuse()
    proxy.cut()


def proxy_faults(hold_s: float) -> list[ProxyFault]:
    """Every proxy fault, each held `hold_s` (a cut is instant)."""
    return [
        ProxyFault(f"delay of {SLOW_S * 1000:g} ms per chunk", lambda p: p.delay(SLOW_S), hold_s),
        ProxyFault("cut of every connection", FaultProxy.cut, 0.5),
        ProxyFault("black hole", FaultProxy.blackhole, hold_s),
        ProxyFault("cut and refused", _cut_and_refuse, hold_s, slow_s=hold_s),
        ProxyFault("silent drop of every connection", FaultProxy.freeze, 0.5),
    ]
