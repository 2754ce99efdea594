"""steer on a real Redis Cluster: `steer daemon` pointed at any node, the real `nudge`
sent to a node that must redirect it, verbs over the API, a takeover after kill -9,
and the clients' own behaviour on a cluster (waiting for a connection, Pub/Sub on one
node, bytes for nudge reads). Real redis-server processes, real daemons."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from daemon.home_lock import daemon_id
from daemon.keys import Keys
from daemon.redis_clients import ClusterClient, RedisClients, subscriber
from daemon.store import Store
from tests.fixtures.redis import Cluster, start_cluster
from tests.fixtures.steer_process import BIN, DaemonProcess, StartSteerDaemon, until

TTL_MS = 2_000


@pytest.fixture
def on_cluster(
    start_steer_daemon: StartSteerDaemon, redis_cluster: Cluster, tmp_path: Path
) -> StartSteerDaemon:
    """`steer daemon`s on the cluster: each its own home; `node` picks the URL's node."""

    def start(name: str = "a", node: int = 0, **env: str) -> DaemonProcess:
        url = redis_cluster.nodes[node].url
        return start_steer_daemon(
            STEER_HOME=str(tmp_path / f"home-{name}"), STEER_REDIS_URL=url, **env
        )

    return start


def idle_session(daemon: DaemonProcess, workdir: Path, task: str = "x") -> str:
    run = daemon.cli("run", f"[scenario:short] {task}", "--workdir", str(workdir))
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    until(lambda: daemon.session(sid)["status"] == "idle", what=f"{sid} to go idle")
    return sid


def nudge_via(
    daemon: DaemonProcess, url: str, sid: str, text: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "nudge", sid, text, "--wait", "--timeout", "30"],
        env=daemon.env | {"STEER_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_daemon_on_any_node_runs_sessions_takes_redirected_nudges_and_verbs(
    on_cluster: StartSteerDaemon, redis_cluster: Cluster, key_prefix: str, tmp_path: Path
) -> None:
    daemon = on_cluster(node=1)
    sid = idle_session(daemon, tmp_path)

    # The nudge CLI starts on a node that does not hold the session's slot: MOVED.
    stream = Keys(key_prefix).nudges(sid)
    elsewhere = redis_cluster.not_serving(stream)
    waited = nudge_via(daemon, elsewhere.url, sid, "no casts")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith(f"delivered to {sid} (root)")

    paused = daemon.cli("pause", sid)
    assert paused.returncode == 0 and paused.stdout.split() == [f"{sid}/root", "paused"]
    resumed = daemon.cli("resume", sid)
    assert resumed.returncode == 0 and resumed.stdout.split() == [f"{sid}/root", "idle"]

    shown = json.loads(daemon.cli("show", sid, "--json").stdout)["messages"]
    assert [m["content"] for m in shown if m["role"] == "system"][-1].endswith(": no casts")
    daemon.stop()
    log = (daemon.home / "daemon.log").read_text()
    assert "Traceback" not in log and " WARNING " not in log, log[-3000:]


def test_a_survivor_takes_over_the_sessions_of_a_daemon_killed_with_9(
    on_cluster: StartSteerDaemon, redis_cluster: Cluster, key_prefix: str, tmp_path: Path
) -> None:
    first = on_cluster("a", node=0, STEER_LEASE_TTL_MS=str(TTL_MS))
    second = on_cluster("b", node=2, STEER_LEASE_TTL_MS=str(TTL_MS))
    sids = [idle_session(first, tmp_path, f"s{n}") for n in range(3)]
    keys = Keys(key_prefix)

    def holder(sid: str) -> str:
        lease = keys.lease(sid)
        token = redis_cluster.call(redis_cluster.serving(lease), "GET", lease)
        return str(token).rpartition(":")[0]

    assert {holder(sid) for sid in sids} == {daemon_id(first.home)}
    first.kill()
    survivor = daemon_id(second.home)
    until(
        lambda: all(holder(sid) == survivor for sid in sids),
        what="the survivor to own every session",
        timeout=TTL_MS / 1000 + 10,
    )
    listed = {row["spec"]["id"]: row["status"] for row in _ls(second)}
    assert all(listed[sid] == "idle" for sid in sids)
    for sid in sids:
        node = redis_cluster.not_serving(keys.nudges(sid))
        waited = nudge_via(second, node.url, sid, f"after the takeover of {sid}")
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout.startswith(f"delivered to {sid} (root)")


@pytest.fixture
def evicting_node(redis_cluster: Cluster) -> Iterator[str]:
    """The cluster's last node set to evict any key (`allkeys-lru`) for one test."""
    node = redis_cluster.nodes[-1]
    redis_cluster.call(node, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    try:
        yield f"127.0.0.1:{node.port}"
    finally:
        redis_cluster.call(node, "CONFIG", "SET", "maxmemory-policy", "noeviction")


def steer_daemon_exit(url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "STEER_"))}
    env |= {"STEER_HOME": str(home), "STEER_REDIS_URL": url}
    return subprocess.run(
        [BIN / "steer", "daemon"], env=env, capture_output=True, text=True, timeout=60
    )


def test_steer_daemon_refuses_a_cluster_with_a_node_that_may_evict_keys(
    redis_cluster: Cluster, evicting_node: str, tmp_path: Path
) -> None:
    refused = steer_daemon_exit(redis_cluster.nodes[0].url, tmp_path / "home")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"steer: Redis at {evicting_node} has maxmemory-policy allkeys-lru, which can evict "
        "steer's keys (sessions, leases, nudges): set `maxmemory-policy noeviction` "
        "(CONFIG SET maxmemory-policy noeviction, and in its redis.conf)\n"
    )


def test_steer_daemon_refuses_a_cluster_that_does_not_serve_every_slot(tmp_path: Path) -> None:
    with start_cluster(tmp_path / "lone", masters=1) as lone:
        refused = steer_daemon_exit(lone.url, tmp_path / "home")
    address = f"127.0.0.1:{lone.nodes[0].port}"
    assert refused.returncode == 2
    assert refused.stderr == (
        f"steer: the Redis Cluster of {address} does not serve every slot (cluster_state:fail, "
        f"0 of 16384 slots assigned, 0 ok): fix it first (`redis-cli --cluster check {address}` "
        "says what is wrong)\n"
    )


def _ls(daemon: DaemonProcess) -> list[dict[str, object]]:
    listed = daemon.cli("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


# -- the clients on a cluster ---------------------------------------------------------


@pytest.fixture
async def cluster_clients(redis_cluster: Cluster) -> AsyncIterator[RedisClients]:
    clients = RedisClients.open(redis_cluster.url, max_connections=2, cluster=True)
    yield clients
    await clients.aclose()


async def test_callers_beyond_the_connection_cap_wait_for_their_turn(
    cluster_clients: RedisClients, key_prefix: str
) -> None:
    """redis-py's cluster client fails a command that finds its node's connections all
    busy; steer's waits, as its single-Redis pools do. Six blocking reads on one slot
    through two connections: all end with their own timeout, none fails."""
    redis = cluster_clients.writes
    keys = [f"{key_prefix}:{{same}}:{n}" for n in range(6)]
    replies = await asyncio.gather(*(redis.blpop([key], timeout=0.1) for key in keys))
    assert replies == [None] * 6


async def test_a_reader_gives_up_after_its_wait_as_the_pools_do(
    redis_cluster: Cluster, key_prefix: str
) -> None:
    reads = ClusterClient.from_url(
        redis_cluster.url, seed_url=redis_cluster.url, wait_s=0.2, max_connections=1
    )
    try:
        blocking = asyncio.ensure_future(reads.blpop([f"{key_prefix}:{{q}}:a"], timeout=1))
        await asyncio.sleep(0)  # let it take the only turn
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await reads.get(f"{key_prefix}:{{q}}:b")
        assert not blocking.done()  # it gave up while the BLPOP still held the turn
        assert await blocking is None
    finally:
        await reads.aclose()


async def test_pipelines_over_many_slots_and_fenced_scripts_on_a_cluster(
    cluster_clients: RedisClients, redis_cluster: Cluster, key_prefix: str
) -> None:
    """The store's leases: claims (a script per slot, loaded on each node on first
    use), one pipelined renewal over sessions on every node, and the holders read back."""
    store = Store(cluster_clients.writes, Keys(key_prefix))
    sids = [f"s-{n:06x}" for n in range(30)]
    assert len({redis_cluster.serving(store.keys.lease(sid)).port for sid in sids}) == 3
    try:
        for sid in sids:
            assert await store.claim(sid, "d-one", 60_000, mode="new")
        assert await store.renew(sids, 60_000) == []
        holders = await store.lease_holders([*sids, "s-none"])
        assert holders == {**{sid: store.tokens[sid] for sid in sids}, "s-none": None}
    finally:
        await store.aclose()


async def test_nudge_reads_stay_bytes_and_the_doorbell_is_heard_on_one_node(
    cluster_clients: RedisClients, key_prefix: str
) -> None:
    store = Store(cluster_clients.writes, Keys(key_prefix))
    listener = store.subscriber()
    try:
        await listener.subscribe(store.keys.doorbell)
        assert await store.claim("s-bytes", "d-one", 60_000, mode="new")
        # The XADD goes to the slot's node, the PUBLISH to whichever: it is broadcast.
        await store.send_nudge({"session": "s-bytes", "text": "caf\xe9"})
        message = None
        async with asyncio.timeout(10):
            while message is None:  # the subscription's own confirmation reads as None
                message = await listener.get_message(timeout=1)
        assert message["channel"] == store.keys.doorbell and message["data"] == "s-bytes"
        (entry,) = await store.read_nudges("s-bytes", start=">")
        assert entry.fields == {b"session": b"s-bytes", b"text": "caf\xe9".encode()}
    finally:
        await listener.aclose()
        await store.aclose()


async def test_a_listener_that_lost_its_node_subscribes_on_the_next(
    cluster_clients: RedisClients,
) -> None:
    redis = cluster_clients.writes
    await redis.ping()  # learn the nodes
    ports = []
    for _ in range(3):
        pubsub = subscriber(redis)
        ports.append(pubsub.connection_pool.connection_kwargs["port"])
        await pubsub.aclose()
    assert len(set(ports)) == 3
