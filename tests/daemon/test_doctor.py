"""`steer doctor`: its pure checks, then the command against a real daemon and Redis."""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon import resp
from daemon.doctor import (
    Check,
    RedisFacts,
    cache_check,
    daemons_check,
    disk_check,
    exit_code,
    model_checks,
    recent_replies,
    redis_checks_for,
    token_check,
)
from daemon.redis_server import RedisServer
from tests.fixtures.steer_process import StartSteerDaemon

HEALTHY = {
    "redis_version": "7.2.4",
    "aof_enabled": 1,
    "maxmemory_policy": "noeviction",
    "cluster_enabled": 0,
}


def levels(checks: list[Check]) -> list[str]:
    return [c.level for c in checks]


# -- pure checks ------------------------------------------------------------------------


def test_a_healthy_redis_is_all_ok() -> None:
    checks = redis_checks_for(RedisFacts("redis://r:1", info=HEALTHY, appendfsync="everysec"))
    assert levels(checks) == ["ok"] * 4
    assert "Redis 7.2.4" in checks[0].what
    assert "appendfsync everysec" in checks[1].what


def test_an_unreachable_redis_fails() -> None:
    [check] = redis_checks_for(RedisFacts("redis://r:1", error="Connection refused"))
    assert check.level == "FAIL" and "Connection refused" in check.what


def test_an_evicting_policy_fails_volatile_ones_too() -> None:
    for policy in ("allkeys-lru", "volatile-ttl"):
        info = HEALTHY | {"maxmemory_policy": policy}
        checks = redis_checks_for(RedisFacts("redis://r:1", info=info, appendfsync="everysec"))
        [bad] = [c for c in checks if c.level != "ok"]
        assert bad.level == "FAIL" and policy in bad.what and "noeviction" in bad.fix


def test_persistence_off_fails_rdb_only_and_fsync_no_warn() -> None:
    off = HEALTHY | {"aof_enabled": 0}
    assert redis_checks_for(RedisFacts("u", info=off, save=""))[1].level == "FAIL"
    assert redis_checks_for(RedisFacts("u", info=off, save="3600 1"))[1].level == "warn"
    no_fsync = redis_checks_for(RedisFacts("u", info=HEALTHY, appendfsync="no"))[1]
    assert no_fsync.level == "warn" and "everysec" in no_fsync.fix


def test_a_cluster_missing_slots_fails() -> None:
    info = HEALTHY | {"cluster_enabled": 1}
    down = {"cluster_state": "fail", "cluster_slots_assigned": 10_000, "cluster_slots_ok": 10_000}
    ok = {"cluster_state": "ok", "cluster_slots_assigned": 16_384, "cluster_slots_ok": 16_384}
    facts = RedisFacts("u", info=info, appendfsync="everysec", cluster_info=down)
    assert redis_checks_for(facts)[3].level == "FAIL"
    facts = RedisFacts("u", info=info, appendfsync="everysec", cluster_info=ok)
    assert redis_checks_for(facts)[3].level == "ok"


def test_daemons_count_only_unexpired_registrations() -> None:
    registry = {
        "d-1": {"url": "http://127.0.0.1:1", "host": "a", "expires_at": 200.0},
        "d-2": {"url": "http://127.0.0.1:2", "host": "b", "expires_at": 50.0},
    }
    check = daemons_check(registry, now=100.0)
    assert check.level == "ok" and "d-1" in check.what and "d-2" not in check.what
    assert daemons_check(registry, now=300.0).level == "warn"


def test_token_mode_must_be_0600() -> None:
    assert token_check(Path("t"), 0o100600).level == "ok"
    bad = token_check(Path("t"), 0o100644)
    assert bad.level == "FAIL" and "0644" in bad.what and bad.fix == "chmod 600 t"


def test_model_without_system_messages_warns() -> None:
    assert levels(model_checks(key_set=False, base_url=None, model="claude-opus-5-5")) == ["ok"] * 2
    checks = model_checks(key_set=True, base_url="http://gw", model="claude-sonnet-5")
    assert levels(checks) == ["ok", "ok", "warn"]


def test_cache_health_over_the_latest_replies() -> None:
    def frame(ts: float, share: float | None, miss: str | None = None) -> dict[str, object]:
        cache = {"prior_cached_share": share, "cache_miss_reason": miss}
        return {"ts": ts, "event": {"type": "model.reply", "cache": cache}}

    frames = [frame(3, 0.5, "system_changed"), frame(1, None), frame(2, 0.9)]
    frames.append({"ts": 4, "event": {"type": "model.request"}})
    replies = recent_replies(frames)
    assert [r["cache"]["prior_cached_share"] for r in replies] == [None, 0.9, 0.5]
    check = cache_check(replies)
    assert check.level == "warn" and "70.0%" in check.what and "system_changed ×1" in check.what
    assert "50.0% of the prior prompt" in cache_check(recent_replies(frames, n=1)).what
    assert cache_check([frame(1, 0.99)["event"]]).level == "ok"  # type: ignore[list-item]
    assert cache_check([]).level == "ok"


def test_disk_space() -> None:
    assert disk_check(Path("/r"), 10 * 2**30, 100 * 2**30).level == "ok"
    assert disk_check(Path("/r"), 2**30, 100 * 2**30).level == "warn"
    assert disk_check(Path("/r"), 2**20, 100 * 2**30).level == "FAIL"


def test_exit_code_only_for_a_fail() -> None:
    assert exit_code([Check("ok", "a"), Check("warn", "b")]) == 0
    assert exit_code([Check("ok", "a"), Check("FAIL", "b")]) == 1


# -- the command ------------------------------------------------------------------------


def test_doctor_healthy_then_each_problem_named(
    start_steer_daemon: StartSteerDaemon, private_redis: RedisServer
) -> None:
    daemon = start_steer_daemon(STEER_REDIS_URL=private_redis.url)
    healthy = daemon.cli("doctor")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "FAIL" not in healthy.stdout
    assert "the daemon's API answers" in healthy.stdout
    report = json.loads(daemon.cli("doctor", "--json").stdout)
    assert report["ok"] is True

    def fails() -> list[str]:
        result = daemon.cli("doctor")
        assert result.returncode == 1, result.stdout
        return [line for line in result.stdout.splitlines() if line.startswith("FAIL")]

    with resp.connect(private_redis.url) as redis:
        redis.execute("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        [evicting] = fails()
        assert "maxmemory-policy allkeys-lru" in evicting and "noeviction" in evicting
        redis.execute("CONFIG", "SET", "appendonly", "no")
        redis.execute("CONFIG", "SET", "save", "")
        assert any("persists nothing" in line and "appendonly yes" in line for line in fails())
    token = daemon.home / "token"
    os.chmod(token, 0o644)
    assert any("0644" in line and f"chmod 600 {token}" in line for line in fails())
    daemon.stop()
    problems = fails()
    assert any(f"no daemon runs on {daemon.home}" in line for line in problems)
    assert len(problems) == 4
    report = json.loads(daemon.cli("doctor", "--json").stdout)
    assert report["ok"] is False
    assert sum(c["level"] == "FAIL" for c in report["checks"]) == 4
