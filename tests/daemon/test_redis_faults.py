"""Redis faults under a real `steer daemon` (issue 8, item 6): redis-server killed -9
and restarted from its AOF, stopped (SIGSTOP) for longer than a lease, and the
connection slowed, cut, black-holed and refused by a TCP proxy; nudges are sent all
along. The daemon rides each out; tests/redis_faults.py has the traffic, the faults
and the checks, and scripts/redis_faults runs the long versions. Then two races of a
session dropped and claimed again: a load that fails, a read that ends late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.intake import NudgeIntake
from daemon.keys import Keys
from daemon.ownership import Ownership
from daemon.redis_clients import RedisClients
from daemon.redis_server import RedisServer
from daemon.store import Store
from protocol.nudges import Nudge
from protocol.sessions import SessionSpec
from tests.faultproxy import FaultProxy
from tests.fixtures.daemon import own, send_nudge
from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon
from tests.redis_faults import (
    Traffic,
    kill_and_restart,
    proxy_faults,
    stop_and_continue,
    through_proxy,
)

#: Short leases, so that the faults below outlast one.
LEASE_TTL_MS = 3_000
#: The agents' pace: a model turn of the loop scenario takes about 0.2 s.
TOKEN_RATE = 50


@pytest.fixture
def proxy(private_redis: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(private_redis.port, lifetime_s=120) as running:
        yield running


def start(start_steer_daemon: StartSteerDaemon, redis_url: str) -> DaemonProcess:
    return start_steer_daemon(
        STEER_REDIS_URL=redis_url,
        STEER_LEASE_TTL_MS=str(LEASE_TTL_MS),
        STEER_SIM_TOKEN_RATE=str(TOKEN_RATE),
    )


def traffic(daemon: DaemonProcess, redis: RedisServer, key_prefix: str) -> Traffic:
    assert daemon.proc is not None
    return Traffic(daemon.home, redis.url, key_prefix, pid=daemon.proc.pid)


@pytest.mark.timeout(60)
async def test_redis_killed_and_restarted_from_its_aof(
    private_redis: RedisServer,
    start_steer_daemon: StartSteerDaemon,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    daemon = start(start_steer_daemon, private_redis.url)
    async with traffic(daemon, private_redis, key_prefix) as user:
        await user.start(tmp_path)
        outage = await kill_and_restart(user, private_redis, down_s=2.0)
        report = await user.finish()
    assert report.problems == [], "\n".join(report.lines())
    assert outage.health_down and not outage.health_errors
    # Shorter than a lease: the sessions stay listed, from memory, marked stale.
    assert outage.stale_seen and outage.fewest_listed == 2
    assert outage.recovered_s is not None
    # A nudge whose XADD timed out may be applied too, once (the stream check says).
    assert report.nudges_applied >= report.nudges_acknowledged > 0


@pytest.mark.timeout(75)
async def test_redis_stopped_for_longer_than_a_lease(
    private_redis: RedisServer,
    start_steer_daemon: StartSteerDaemon,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    daemon = start(start_steer_daemon, private_redis.url)
    async with traffic(daemon, private_redis, key_prefix) as user:
        await user.start(tmp_path)
        outage = await stop_and_continue(user, private_redis, stopped_s=12.0)
        report = await user.finish()
    assert report.problems == [], "\n".join(report.lines())
    assert outage.health_down and not outage.health_errors
    assert outage.recovered_s is not None
    # The leases ran out meanwhile: the sessions were dropped, then claimed again.
    assert report.log_counts["session.lost"] >= 2 and report.log_counts["session.claimed"] >= 2
    # A nudge whose XADD timed out may be applied too, once (the stream check says).
    assert report.nudges_applied >= report.nudges_acknowledged > 0


@pytest.mark.timeout(90)
async def test_the_connection_slowed_cut_black_holed_and_refused(
    private_redis: RedisServer,
    proxy: FaultProxy,
    start_steer_daemon: StartSteerDaemon,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    daemon = start(start_steer_daemon, proxy.url())
    async with traffic(daemon, private_redis, key_prefix) as user:
        await user.start(tmp_path)
        outages = [await through_proxy(user, proxy, fault) for fault in proxy_faults(hold_s=3.5)]
        # The silenced doorbell connection is found out (it answers no PING) and made
        # again: Redis lists that one and the silent one, which it never saw end.
        resubscribed = await user.until_subscribed(2)
        report = await user.finish()
    lines = "\n".join(report.lines())
    assert report.problems == [], lines
    assert all(not o.health_errors and o.recovered_s is not None for o in outages), lines
    # Once Redis answers again, even slowly, the daemon keeps the sessions it claims:
    # their leases are renewed in time, and none of their writes is fenced.
    assert all(o.dropped_after == 0 for o in outages), lines
    slow, _, black_hole, refused, _ = outages
    assert not slow.health_down, lines  # slow is not down
    assert black_hole.health_down and refused.health_down, lines
    assert resubscribed is not None, lines
    assert proxy.counters.cut > 0
    assert report.nudges_applied >= report.nudges_acknowledged > 0


async def test_a_session_claimed_as_the_connection_breaks_is_loaded_at_the_next_scan(
    proxy: FaultProxy,
) -> None:
    clients = RedisClients.open(proxy.url())  # as the daemon's: no retries
    store = Store(clients.writes, Keys("claims"))
    await store.redis.hset(store.keys.sessions, "s-one", "one")  # listed, no lease: an orphan
    spec = SessionSpec(id="s-one", name="one", task="t", workdir="/", model="m", created_at=1.0)
    await store.redis.set(store.keys.spec("s-one"), spec.model_dump_json())  # claims want it
    loads: list[str] = []

    async def load(sids: list[str]) -> None:
        loads.extend(sids)
        if len(loads) == 1:
            proxy.cut()  # the first load meets a broken connection
        await store.load_spec(sids[0])

    ownership = Ownership(
        store, "d-claims", info={}, on_claimed=load, on_lost=lambda _: None, ttl_ms=LEASE_TTL_MS
    )
    try:
        await ownership.scan()
        assert loads == ["s-one"] and ownership.owned == []  # not kept, unloaded, for good
        await ownership.scan()  # its lease still names this daemon: claimed again
        assert loads == ["s-one", "s-one"] and ownership.owned == ["s-one"]
    finally:
        await store.aclose()
        await clients.aclose()


async def test_a_session_dropped_and_claimed_again_is_read_by_one_reader(store: Store) -> None:
    """A read cancelled when its session is dropped ends after the next claim's read has
    begun: a wake-up meanwhile must not start a second, overlapping read, which would
    hand the same nudges on again, and out of order with later ones."""
    sid = "s-again"
    await own(store, sid)
    await send_nudge(store, sid, "first")
    handed: list[str] = []
    reading, most = 0, 0
    go_on, changed = asyncio.Event(), asyncio.Event()

    async def on_nudge(_sid: str, _entry: str, nudge: Nudge) -> None:
        nonlocal reading, most
        handed.append(nudge.text)
        reading += 1
        most = max(most, reading)
        changed.set()
        try:
            await go_on.wait()
        finally:
            reading -= 1

    async def on_invalid(*_: str) -> None:
        raise AssertionError("no entry here is invalid")

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                changed.clear()
                await changed.wait()

    intake = NudgeIntake(store, owned=lambda: {sid}, on_nudge=on_nudge, on_invalid=on_invalid)
    intake.open(sid)
    await until(lambda: handed == ["first"])
    intake.close(sid)  # dropped: its read is cancelled...
    intake.open(sid)  # ...and claimed again before that read has ended
    await until(lambda: handed == ["first", "first"])  # the new read has it (unacked)
    intake.wake(sid)  # a doorbell: the read under way reads again, no second one starts
    go_on.set()
    await send_nudge(store, sid, "second")
    intake.wake(sid)
    await until(lambda: "second" in handed)
    intake.close(sid)
    assert handed.count("first") == 2 and most == 1, handed
