"""Costs from the command line against a real `steer daemon` (which, with no
ANTHROPIC_API_KEY, runs the bundled simulator): every cost is labelled simulated, a
model with no price says so, `steer cost` adds up, and a bad price file stops the start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon, until


def ok(steerd: DaemonProcess, *args: str) -> str:
    result = steerd.cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def idle_session(steerd: DaemonProcess, task: str, workdir: Path, *options: str) -> str:
    sid = ok(steerd, "run", task, "--workdir", str(workdir), *options).strip()
    until(lambda: steerd.session(sid)["status"] == "idle", what="the session to end its turn")
    return sid


def settled_requests(steerd: DaemonProcess, sid: str, requests: int) -> None:
    def answered() -> bool:
        agents: Any = steerd.session(sid)["agents"]
        return bool(agents[0]["requests"] == requests and agents[0]["status"] == "idle")

    until(answered, what=f"request {requests} to be answered")


def test_costs_on_the_simulator_are_labelled_and_steer_cost_adds_them_up(
    steerd: DaemonProcess, workdir: Path
) -> None:
    sid = idle_session(steerd, "[scenario:short] cost me", workdir, "--name", "costly")
    sent = steerd.cli(sid, "and say what it cost", tool="nudge")
    assert sent.returncode == 0, sent.stderr
    settled_requests(steerd, sid, 4)

    session: Any = steerd.session(sid)
    assert session["spec"]["simulated"] is True
    cost = session["agents"][0]["cost_usd"]
    assert cost > 0
    assert f"sim ${cost:.4f}" in ok(steerd, "ls")
    assert f"cost=${cost:.4f} (simulated)" in ok(steerd, "show", "costly")
    logs = ok(steerd, "logs", sid)
    assert "(simulated)]" in logs and "had the cache been lost (saved sim $" in logs

    report = json.loads(ok(steerd, "cost", sid, "--json"))
    assert report["simulated"] is True
    assert report["cost_usd"] == pytest.approx(cost)
    (agent,) = report["agents"]
    assert agent["requests"] == 4 and agent["tree_cost_usd"] == pytest.approx(cost)
    (nudge,) = report["nudges"]
    assert nudge["author"] == "alice" and nudge["agent"] == "root" and nudge["request_no"] == 4
    assert nudge["tokens_added"] > 0
    assert nudge["cache_saving_usd"] == pytest.approx(
        nudge["cost_if_cache_lost_usd"] - nudge["request_cost_usd"]
    )
    assert nudge["cache_saving_usd"] > 0
    assert report["cache_saving_usd"] == pytest.approx(nudge["cache_saving_usd"])

    table = ok(steerd, "cost", "costly")
    assert table.startswith(f"{sid} (costly): ${cost:.4f} (simulated),")
    assert "simulated: the bundled simulator's token counts" in table
    assert f"sim ${nudge['cache_saving_usd']:.4f}" in table
    assert nudge["nudge_id"] in table and "alice" in table


def test_a_model_with_no_price_shows_price_unknown(steerd: DaemonProcess, workdir: Path) -> None:
    # Sonnet 5's price is not published: it has none built in.
    sid = idle_session(steerd, "[scenario:short] unpriced", workdir, "--model", "claude-sonnet-5")
    session: Any = steerd.session(sid)
    assert session["agents"][0]["cost_usd"] is None
    assert session["agents"][0]["usage"]["output_tokens"] > 0
    row = next(line for line in ok(steerd, "ls").splitlines() if line.startswith(sid))
    assert "price unknown" in row and "$" not in row
    assert "cost=price unknown" in ok(steerd, "show", sid)
    table = ok(steerd, "cost", sid)
    assert f"{sid} (" in table and "): price unknown," in table
    assert json.loads(ok(steerd, "cost", sid, "--json"))["cost_usd"] is None


def test_a_price_file_prices_a_model_and_a_bad_one_stops_the_daemon(
    start_steer_daemon: StartSteerDaemon, workdir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."claude-sonnet-5"]\ninput = 3\noutput = "fifteen"\n')
    with pytest.raises(AssertionError, match=r"bad\.toml: \[models\.\"claude-sonnet-5\"\]: needs"):
        start_steer_daemon(STEER_PRICES=str(bad))

    prices = tmp_path / "home" / "prices.toml"  # STEER_HOME/prices.toml
    prices.write_text(
        '[models."claude-sonnet-5"]\n'
        "input = 3\noutput = 15\ncache_write_5m = 3.75\ncache_write_1h = 6\ncache_read = 0.30\n"
    )
    steerd = start_steer_daemon()
    sid = idle_session(steerd, "[scenario:short] priced", workdir, "--model", "claude-sonnet-5")
    agent: Any = steerd.session(sid)["agents"][0]
    usage = agent["usage"]
    expected = (
        usage["input_tokens"] * 3
        + usage["cache_creation_input_tokens"] * 3.75
        + usage["cache_read_input_tokens"] * 0.30
        + usage["output_tokens"] * 15
    ) / 1_000_000
    assert agent["cost_usd"] == pytest.approx(expected)
