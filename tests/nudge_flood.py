"""A flood of nudges through a live `steer daemon`: is the nudge stream bounded?

A real `steer daemon` process (its embedded simulator, no token delay) on a private
redis-server with AOF runs a few idle sessions; numbered nudges are appended to their
streams the way the `nudge` command does (XADD, then the doorbell), at most `window` of
them sent and not yet applied at any time. Every session's nudge stream length is
sampled after each batch sent and each batch applied, and its maximum kept: without
trimming it would reach the number of nudges sent to the session. Then the audit of
tests/chaos.py: every nudge applied exactly once, in the order sent, its text in the
conversation once.

Used by `scripts/nudge_flood` (10,000 nudges) and tests/daemon/test_bounded_streams.py
(a short run).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from daemon.keys import NUDGE_GROUP, Keys
from daemon.redis_server import RedisServer
from protocol.nudges import Nudge
from tests.chaos import Report, audit
from tests.fixtures.steer_process import SCENARIOS, DaemonProcess


@dataclass
class FloodReport:
    nudges_sent: int = 0
    nudges_applied: int = 0
    #: The longest any session's nudge stream was seen while the nudges flowed.
    max_stream_len: int = 0
    #: Each session's nudge stream length and unacknowledged entries at the end.
    final_lens: list[int] = field(default_factory=list)
    final_pending: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"nudges sent {self.nudges_sent}, applied {self.nudges_applied} "
            f"in {self.elapsed_s:.1f} s",
            f"nudge stream max length while flowing: {self.max_stream_len}",
            f"nudge stream length at the end: {self.final_lens}, "
            f"unacknowledged: {self.final_pending}",
            *(f"PROBLEM {p}" for p in self.problems),
        ]


async def run(
    root: Path, *, sessions: int, nudges: int, window: int, within_s: float = 600.0
) -> FloodReport:
    """Start redis-server and `steer daemon` under `root`, flood, audit, stop them."""
    redis_server = RedisServer(root / "redis").start()
    prefix = f"flood{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "STEER_"))}
    env |= {
        "STEER_HOME": str(root / "home"),
        "STEER_REDIS_URL": redis_server.url,
        "STEER_KEY_PREFIX": prefix,
        "STEER_SIM_TOKEN_RATE": "0",
        "STEER_SIM_SCENARIOS": str(SCENARIOS),
    }
    steerd = DaemonProcess(env, root / "home")
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        steerd.start()
        sids = []
        for n in range(sessions):
            workdir = root / "work" / f"w{n}"
            workdir.mkdir(parents=True)
            result = steerd.cli("run", f"flood {n}", "--workdir", str(workdir))
            assert result.returncode == 0, result.stderr
            sids.append(result.stdout.strip())
        return await flood(
            redis, Keys(prefix), sids, nudges=nudges, window=window, within_s=within_s
        )
    finally:
        steerd.stop()
        await redis.aclose()
        redis_server.stop()


async def flood(
    redis: Redis, keys: Keys, sids: list[str], *, nudges: int, window: int, within_s: float
) -> FloodReport:
    report = FloodReport()
    began = time.monotonic()
    sent: dict[str, list[str]] = defaultdict(list)
    applied = _AppliedCounter(redis, keys, sids)
    number = 0
    while applied.total < nudges:
        if time.monotonic() - began > within_s:
            report.problems.append(f"only {applied.total} of {nudges} applied in {within_s} s")
            break
        batch = min(window - (number - applied.total), nudges - number)
        if batch > 0:
            async with redis.pipeline(transaction=False) as pipe:
                for _ in range(batch):
                    number += 1
                    sid = sids[number % len(sids)]
                    nudge = Nudge(
                        nudge_id=f"n-{number:06d}",
                        session=sid,
                        text=f"flood nudge #{number}",
                        author="flood",
                        sent_at=time.time(),
                    )
                    pipe.xadd(keys.nudges(sid), nudge.to_fields())  # type: ignore[arg-type]
                    sent[sid].append(nudge.nudge_id)
                for sid in sids:
                    pipe.publish(keys.doorbell, sid)
                await pipe.execute()
            report.max_stream_len = max(report.max_stream_len, *await _lengths(redis, keys, sids))
        await applied.read(block_ms=200)
        report.max_stream_len = max(report.max_stream_len, *await _lengths(redis, keys, sids))
    report.elapsed_s = time.monotonic() - began
    report.nudges_sent = number
    report.final_lens = await _lengths(redis, keys, sids)
    report.final_pending = [
        int((await redis.xpending(keys.nudges(sid), NUDGE_GROUP))["pending"]) for sid in sids
    ]
    audited = Report()
    await audit(redis, keys, sids, sent, audited)
    report.nudges_applied = audited.nudges_applied
    report.problems += audited.problems
    return report


class _AppliedCounter:
    """Counts `nudge.applied` events by following every session's event stream."""

    def __init__(self, redis: Redis, keys: Keys, sids: list[str]) -> None:
        self._redis = redis
        self._cursors = {keys.events(sid): "0-0" for sid in sids}
        self.total = 0

    async def read(self, *, block_ms: int) -> None:
        reply: Any = await self._redis.xread(self._cursors, block=block_ms)  # type: ignore[arg-type]
        for key, entries in reply or []:
            for entry_id, fields in entries:
                self._cursors[key] = entry_id
                if json.loads(fields["frame"])["event"]["type"] == "nudge.applied":
                    self.total += 1


async def _lengths(redis: Redis, keys: Keys, sids: list[str]) -> list[int]:
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.xlen(keys.nudges(sid))
        return [int(n) for n in await pipe.execute()]
