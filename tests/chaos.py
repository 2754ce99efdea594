"""A randomized crash run: two `steer daemon` processes on one Redis, sessions from the
simulator with tool calls and subagents, a stream of numbered nudges, and `kill -9`
of either daemon at random points, each restarted. Then an audit of Redis.

Used by `scripts/crash_test` (the long run) and by tests/daemon/test_chaos.py (a short
one). Only real parts: redis-server with AOF, `steer sim`, `steer daemon`, SIGKILL.

The audit, from Redis alone:
- every accepted nudge (its XADD returned) was applied exactly once, in the order it
  was sent to its agent, and its text is in the conversation exactly once;
- every conversation passes the Messages API placement rules (`daemon/placement.py`),
  and every tool_use is answered exactly once;
- along each session's event stream the writers' lease epochs never go down, so no
  write with a stale epoch landed;
- no session was without a live owner for longer than the lease TTL plus 5 s (sampled
  every 0.2 s while the run goes on; a daemon is only killed while the other is up).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from daemon.home_lock import ID_FILE
from daemon.keys import Keys
from daemon.paths import DAEMON_FILE
from daemon.placement import placement_problems
from daemon.redis_server import RedisServer, free_port
from protocol.nudges import Nudge

BIN = Path(sys.executable).parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIM_KEY = "chaos-sim"
#: A session's tasks: agents that loop on tool calls, and one that fans out.
TASKS = (
    "[scenario:loop] chaos {n}",
    "[scenario:chaos-spawn] chaos {n}",
    "[scenario:short] chaos {n}",
)


@dataclass
class Config:
    sessions: int = 6
    kills: int = 200
    nudges_per_s: float = 10.0
    lease_ttl_ms: int = 3_000
    #: Seconds between kills, drawn uniformly.
    kill_every: tuple[float, float] = (0.5, 2.0)
    settle_s: float = 90.0
    seed: int | None = None


@dataclass
class Report:
    kills: int = 0
    nudges_sent: int = 0
    nudges_applied: int = 0
    sessions: int = 0
    agents: int = 0
    requests: int = 0
    max_ownerless_s: float = 0.0
    takeovers: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        takeovers = sorted(self.takeovers)
        median = takeovers[len(takeovers) // 2] if takeovers else 0.0
        return [
            f"kills: {self.kills} (kill -9 of either daemon, each restarted)",
            f"sessions: {self.sessions}, agents: {self.agents}, model requests: {self.requests}",
            f"nudges: {self.nudges_sent} accepted, {self.nudges_applied} applied",
            f"longest time a session had no live owner: {self.max_ownerless_s:.2f} s",
            f"takeovers measured: {len(takeovers)}, median {median:.2f} s, "
            f"max {max(takeovers, default=0.0):.2f} s (kill -> new lease)",
            f"elapsed: {self.elapsed_s:.0f} s",
            f"problems: {len(self.problems)}",
            *(f"  - {p}" for p in self.problems[:50]),
        ]


class Daemon:
    """One `steer daemon` child with its own home."""

    def __init__(self, name: str, root: Path, env: dict[str, str]) -> None:
        self.name = name
        self.home = root / name
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {**env, "STEER_HOME": str(self.home)}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def daemon_id(self) -> str:
        return (self.home / ID_FILE).read_text().strip()

    def start(self) -> None:
        with (self.home / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [BIN / "steer", "daemon"], env=self.env, stdout=log, stderr=log
            )

    def up(self) -> bool:
        return (
            self.proc is not None
            and self.proc.poll() is None
            and (self.home / DAEMON_FILE).exists()
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "steer", *args], env=self.env, capture_output=True, text=True, timeout=60
        )


async def run(config: Config, root: Path, log: Any = print) -> Report:
    rng = random.Random(config.seed)
    report = Report()
    began = time.monotonic()
    redis_server = RedisServer(root / "redis").start()
    sim_port = free_port()
    sim = _simulator(sim_port)
    prefix = f"chaos{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "STEER_"))}
    env |= {
        "STEER_REDIS_URL": redis_server.url,
        "STEER_KEY_PREFIX": prefix,
        "STEER_LEASE_TTL_MS": str(config.lease_ttl_ms),
        "ANTHROPIC_API_KEY": SIM_KEY,
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{sim_port}",
    }
    daemons = [Daemon("a", root, env), Daemon("b", root, env)]
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(prefix)
    try:
        for d in daemons:
            d.start()
        await _until(lambda: all(d.up() for d in daemons), "both daemons up", 60)
        sids = []
        for n in range(config.sessions):
            workdir = root / "work" / f"w{n}"
            workdir.mkdir(parents=True, exist_ok=True)
            result = daemons[n % 2].cli(
                "run", TASKS[n % len(TASKS)].format(n=n), "--workdir", str(workdir)
            )
            if result.returncode != 0:
                raise RuntimeError(f"steer run failed: {result.stderr}")
            sids.append(result.stdout.strip())
        report.sessions = len(sids)
        sent: dict[str, list[str]] = defaultdict(list)  # sid -> nudge ids, in send order
        stop = asyncio.Event()
        ownerless = _OwnerlessWatch(redis, keys, sids, daemons)
        tasks = [
            asyncio.create_task(_send_nudges(redis, keys, sids, sent, config, rng, stop)),
            asyncio.create_task(ownerless.run(stop)),
        ]
        report.kills = await _kill_loop(daemons, config, rng, ownerless, log)
        await _until(lambda: all(d.up() for d in daemons), "both daemons up at the end", 60)
        stop.set()
        await asyncio.gather(*tasks)
        report.nudges_sent = sum(len(v) for v in sent.values())
        log(f"kills done; waiting for {report.nudges_sent} nudges to be applied")
        await settle(redis, keys, sent, config.settle_s)
        report.max_ownerless_s = ownerless.max_s
        report.takeovers = ownerless.takeovers
        await audit(redis, keys, sids, sent, report)
    finally:
        for d in daemons:
            d.stop()
        sim.terminate()
        sim.wait()
        await redis.aclose()
        redis_server.stop()
    limit = config.lease_ttl_ms / 1000 + 5
    if report.max_ownerless_s > limit:
        report.problems.append(
            f"a session had no live owner for {report.max_ownerless_s:.1f} s (> {limit:.1f} s)"
        )
    report.elapsed_s = time.monotonic() - began
    return report


def _simulator(port: int) -> subprocess.Popen[bytes]:
    """`steer sim` in its own process, never on a daemon's loop."""
    return subprocess.Popen(
        [
            *(BIN / "steer", "sim", "--port", str(port), "--scenarios", str(SCENARIOS)),
            *("--token-rate", "200", "--api-key", SIM_KEY),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _kill_loop(
    daemons: list[Daemon], config: Config, rng: random.Random, watch: _OwnerlessWatch, log: Any
) -> int:
    kills = 0
    while kills < config.kills:
        await asyncio.sleep(rng.uniform(*config.kill_every))
        victim = rng.choice(daemons)
        other = daemons[1 - daemons.index(victim)]
        await _until(lambda d=other: d.up(), f"daemon {other.name} up", 60)  # type: ignore[misc]
        if not victim.alive():
            continue
        watch.killed(victim.daemon_id)
        victim.kill()
        kills += 1
        if kills % 20 == 0:
            log(f"{kills} kills")
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        (victim.home / DAEMON_FILE).unlink(missing_ok=True)
        victim.start()
    return kills


async def _send_nudges(
    redis: Redis,
    keys: Keys,
    sids: list[str],
    sent: dict[str, list[str]],
    config: Config,
    rng: random.Random,
    stop: asyncio.Event,
) -> None:
    number = 0
    while not stop.is_set():
        sid = rng.choice(sids)
        number += 1
        nudge = Nudge(
            nudge_id=f"n-{number:06d}",
            session=sid,
            text=f"chaos nudge #{number}",
            author="chaos",
            sent_at=time.time(),
        )
        await redis.xadd(keys.nudges(sid), nudge.to_fields())  # type: ignore[arg-type]
        sent[sid].append(nudge.nudge_id)  # accepted: the XADD returned
        await redis.publish(keys.doorbell, sid)
        await asyncio.sleep(1 / config.nudges_per_s)


class _OwnerlessWatch:
    """Samples every session's lease: how long was each without a live owner?"""

    def __init__(self, redis: Redis, keys: Keys, sids: list[str], daemons: list[Daemon]) -> None:
        self._redis, self._keys, self._sids, self._daemons = redis, keys, sids, daemons
        self._since: dict[str, float] = {}
        self._killed_at: dict[str, float] = {}  # daemon id -> when it was last killed
        self._owner: dict[str, str] = {}  # sid -> daemon id of its last seen owner
        self.max_s = 0.0
        self.takeovers: list[float] = []

    def killed(self, daemon_id: str) -> None:
        self._killed_at[daemon_id] = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in self._sids:
                    pipe.get(self._keys.lease(sid))
                leases = await pipe.execute()
            now = time.monotonic()
            live = {d.daemon_id for d in self._daemons if d.alive()}
            for sid, lease in zip(self._sids, leases, strict=True):
                holder = lease.rpartition(":")[0] if lease else None
                if holder in live:
                    if sid in self._since:
                        self.max_s = max(self.max_s, now - self._since.pop(sid))
                    previous = self._owner.get(sid)
                    if previous is not None and previous != holder and previous in self._killed_at:
                        self.takeovers.append(now - self._killed_at[previous])
                    self._owner[sid] = holder
                else:
                    self._since.setdefault(sid, now)
            await asyncio.sleep(0.2)
        now = time.monotonic()
        for since in self._since.values():
            self.max_s = max(self.max_s, now - since)


async def settle(redis: Redis, keys: Keys, sent: dict[str, list[str]], within: float) -> None:
    """Wait until every accepted nudge is applied (or time runs out; the audit says)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        missing = 0
        for sid, ids in sent.items():
            applied = {e["nudge_id"] for e in await _events(redis, keys, sid, "nudge.applied")}
            missing += len(set(ids) - applied)
        if not missing:
            return
        await asyncio.sleep(0.5)


async def _events(redis: Redis, keys: Keys, sid: str, kind: str | None = None) -> list[Any]:
    entries = await redis.xrange(keys.events(sid))
    frames = [json.loads(fields["frame"]) for _, fields in entries]
    return [f["event"] for f in frames if kind is None or f["event"]["type"] == kind]


async def audit(
    redis: Redis, keys: Keys, sids: list[str], sent: dict[str, list[str]], report: Report
) -> None:
    problems = report.problems
    for sid in sids:
        entries = await redis.xrange(keys.events(sid))
        epochs = [int(fields.get("owner", ":0").rpartition(":")[2]) for _, fields in entries]
        if any(later < earlier for earlier, later in itertools.pairwise(epochs)):
            problems.append(f"{sid}: an event was written with a stale epoch")
        events = [json.loads(fields["frame"])["event"] for _, fields in entries]
        applied = [e["nudge_id"] for e in events if e["type"] == "nudge.applied"]
        counts = Counter(applied)
        report.nudges_applied += len(counts)
        for nudge_id in sent.get(sid, []):
            if counts[nudge_id] != 1:
                problems.append(f"{sid}: {nudge_id} applied {counts[nudge_id]} times")
        order = [n for n in applied if n in set(sent.get(sid, []))]
        if order != [n for n in sent.get(sid, []) if n in counts]:
            problems.append(f"{sid}: nudges applied out of the order they were sent")
        configs = await redis.hgetall(keys.agents(sid))
        report.agents += len(configs)
        for aid in configs:
            raw = await redis.lrange(keys.messages(sid, aid), 0, -1)
            messages = [json.loads(m) for m in raw]
            # At rest a conversation may end with the assistant's turn; the next request
            # would not send it as a prefill, so judge it without that turn.
            judged = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
            for problem in placement_problems(judged):
                problems.append(f"{sid}/{aid}: {problem}")
            problems.extend(f"{sid}/{aid}: {p}" for p in _tool_use_problems(messages))
            texts = Counter(str(m.get("content")) for m in messages if m.get("role") == "system")
            problems.extend(
                f"{sid}/{aid}: a nudge's text is in the conversation {n} times"
                for text, n in texts.items()
                if n > 1
            )
            state = await redis.get(keys.state(sid, aid))
            report.requests += json.loads(state)["requests"] if state else 0


def _tool_use_problems(messages: list[dict[str, Any]]) -> list[str]:
    uses: Counter[str] = Counter()
    results: Counter[str] = Counter()
    for message in messages:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                uses[block["id"]] += 1
            elif block.get("type") == "tool_result":
                results[block["tool_use_id"]] += 1
    last = messages[-1] if messages else {}
    pending = {
        b["id"]
        for b in (last.get("content") if isinstance(last.get("content"), list) else [])
        if last.get("role") == "assistant" and b.get("type") == "tool_use"
    }
    return [
        f"tool_use {use} answered {results[use]} times"
        for use in uses
        if results[use] != 1 and not (use in pending and results[use] == 0)
    ] + [f"tool_use {use} used {n} times" for use, n in uses.items() if n > 1]


async def _until(condition: Any, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
