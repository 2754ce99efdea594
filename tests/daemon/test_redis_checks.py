"""The start-up checks of a Redis: the pure verdict over INFO and CONFIG replies, and
`steer daemon` saying it in one line on a real Redis that persists nothing."""

from __future__ import annotations

from pathlib import Path

from daemon.redis_checks import NodeFacts, cluster_problem, judge
from daemon.redis_server import RedisServer
from tests.fixtures.steer_process import StartSteerDaemon

SAFE = {"maxmemory_policy": "noeviction", "aof_enabled": 1}


def lines(nodes: list[NodeFacts]) -> list[tuple[bool, str]]:
    return [(problem.fatal, problem.line()) for problem in judge(nodes)]


def test_a_node_with_aof_and_noeviction_is_fine() -> None:
    assert judge([NodeFacts("a:1", SAFE)]) == []
    assert judge([NodeFacts("a:1", {**SAFE, "aof_enabled": 0}, save="3600 1")]) == []


def test_every_policy_that_can_evict_is_fatal_volatile_ones_too() -> None:
    for policy in ("allkeys-lru", "allkeys-random", "volatile-lru", "volatile-ttl"):
        ((fatal, line),) = lines([NodeFacts("a:1", {**SAFE, "maxmemory_policy": policy})])
        assert fatal
        assert line.startswith(f"Redis at a:1 has maxmemory-policy {policy}, which can evict")
        assert "maxmemory-policy noeviction" in line


def test_the_same_problem_on_several_nodes_is_one_line_naming_them() -> None:
    evicting = {**SAFE, "maxmemory_policy": "allkeys-lru"}
    nodes = [NodeFacts("a:1", evicting), NodeFacts("a:2", SAFE), NodeFacts("a:3", evicting)]
    ((fatal, line),) = lines(nodes)
    assert fatal and line.startswith("Redis at a:1 and a:3 has maxmemory-policy allkeys-lru")


def test_no_persistence_is_a_warning() -> None:
    ((fatal, line),) = lines([NodeFacts("a:1", {**SAFE, "aof_enabled": 0}, save="")])
    assert not fatal
    assert line == (
        "Redis at a:1 persists nothing (appendonly no, no save points): a restart of Redis "
        "loses every session and queued nudge; set appendonly yes"
    )


def test_what_cannot_be_read_is_a_warning_that_says_so() -> None:
    no_config = NodeFacts("a:1", {**SAFE, "aof_enabled": 0}, refused="unknown command 'CONFIG'")
    ((fatal, line),) = lines([no_config])
    assert not fatal and "save points cannot be read (unknown command 'CONFIG'" in line
    no_info = NodeFacts("a:2", None, refused="NOPERM this user has no permissions")
    ((fatal, line),) = lines([no_info])
    assert not fatal and line.startswith("cannot read INFO on a:2 (NOPERM this user")


def test_a_value_the_server_sent_is_shown_as_it_is() -> None:
    weird = NodeFacts("a:1", {**SAFE, "maxmemory_policy": "{nodes}"})
    ((_, line),) = lines([weird])
    assert line.startswith("Redis at a:1 has maxmemory-policy {nodes}, which")


def test_a_cluster_must_serve_every_slot() -> None:
    ok = {"cluster_state": "ok", "cluster_slots_assigned": "16384", "cluster_slots_ok": "16384"}
    assert cluster_problem("a:1", ok) is None
    partial = {**ok, "cluster_slots_assigned": "16000", "cluster_slots_ok": "16000"}
    problem = cluster_problem("a:1", partial)  # full coverage not required: still ok
    assert problem is not None and problem.fatal
    assert "(cluster_state:ok, 16000 of 16384 slots assigned, 16000 ok)" in problem.line()
    failing = cluster_problem("a:1", {**ok, "cluster_state": "fail", "cluster_slots_ok": "10"})
    assert failing is not None and "cluster_state:fail" in failing.line()


def test_steer_daemon_warns_in_one_line_about_a_redis_that_persists_nothing(
    start_steer_daemon: StartSteerDaemon, tmp_path: Path
) -> None:
    config = ["appendonly no", 'save ""']
    with RedisServer(tmp_path / "volatile", extra_config=config) as server:
        daemon = start_steer_daemon(STEER_REDIS_URL=server.url)
        assert daemon.cli("ls").returncode == 0  # it runs
        daemon.stop()
    log = (daemon.home / "daemon.log").read_text().splitlines()
    warnings = [line for line in log if " WARNING " in line and "redis." in line]
    assert len(warnings) == 1, log
    assert warnings[0].endswith(
        f"WARNING steer.redis redis.not_persistent Redis at 127.0.0.1:{server.port} persists "
        "nothing (appendonly no, no save points): a restart of Redis loses every session and "
        "queued nudge; set appendonly yes"
    )
