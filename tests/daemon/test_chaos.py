"""The short version of scripts/crash_test: two real daemons on one Redis, kill -9 of
either at random points, then an audit of what Redis holds (see tests/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import Config, run


@pytest.mark.timeout(240)
async def test_two_daemons_killed_at_random_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    config = Config(sessions=4, kills=6, nudges_per_s=8, lease_ttl_ms=2_000, seed=7)
    report = await run(config, tmp_path, log=lambda _: None)
    assert report.kills == config.kills
    assert report.nudges_sent > 0 and report.nudges_applied == report.nudges_sent
    assert report.agents > report.sessions  # the fan-out session's subagents are there
    assert report.problems == [], "\n".join(report.lines())
