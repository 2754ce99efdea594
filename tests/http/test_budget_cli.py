"""Budgets from the command line: `steer run --budget-usd`, `steer budget`, and the
daemon's default budget, with the real `steer` against a real `steer daemon`."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon, until
from tests.http.test_cli import ok, refused, root_status, run


def root_requests(steerd: DaemonProcess, sid: str) -> int:
    agents = steerd.session(sid)["agents"]
    assert isinstance(agents, list)
    return int(next(a for a in agents if a["agent"] == "root")["requests"])


def test_run_with_a_usd_budget_stops_the_session_and_steer_budget_raises_it(
    steerd: DaemonProcess, workdir: Path
) -> None:
    sid = run(
        steerd, "[scenario:steady] thrifty", workdir, "--name", "thrifty", "--budget-usd", "1e-6"
    )
    until(lambda: root_status(steerd, sid) == "budget_reached", what="the budget to stop it")
    assert steerd.session(sid)["budget"] == {"usd": 1e-6, "tokens": None}
    assert root_requests(steerd, sid) == 1

    listed = ok(steerd, "ls")
    assert "! budget_reached" in listed and "of $0.000001" in listed
    shown = ok(steerd, "show", "thrifty")
    assert "budget reached: $" in shown and f"steer budget {sid} --usd N" in shown
    assert "budget: $" in shown

    assert refused(steerd, "budget", "thrifty") == (
        "give a budget to set: --usd USD, --tokens N or both"
    )
    assert refused(steerd, "resume", "thrifty").endswith("raise it (steer budget)")
    answer = ok(steerd, "budget", "thrifty", "--usd", "100", "--author", "bob")
    assert answer.startswith(f"{sid}  budget: $") and answer.rstrip().endswith("of $100.00")
    until(lambda: root_requests(steerd, sid) >= 3, what="the session to go on")
    assert root_status(steerd, sid) != "budget_reached"
    assert steerd.session(sid)["budget"] == {"usd": 100.0, "tokens": None}
    logs = ok(steerd, "logs", sid)
    assert "budget.set" in logs and "set to $100.00 by bob" in logs
    ok(steerd, "veto", sid)


def test_a_usd_budget_needs_a_priced_model(steerd: DaemonProcess, workdir: Path) -> None:
    message = refused(
        steerd,
        "run",
        "no price",
        "--workdir",
        str(workdir),
        "--model",
        "claude-unpriced-1",
        "--budget-usd",
        "1",
    )
    assert "a USD budget needs the price of 'claude-unpriced-1'" in message


def test_the_daemons_default_budget_applies_to_a_session_started_without_one(
    start_steer_daemon: StartSteerDaemon, workdir: Path
) -> None:
    steerd = start_steer_daemon(STEER_BUDGET_TOKENS="1")
    sid = run(steerd, "[scenario:steady] default budget", workdir)
    until(lambda: root_status(steerd, sid) == "budget_reached", what="the default budget")
    assert steerd.session(sid)["budget"] == {"usd": None, "tokens": 1}
    assert "budget reached: " in ok(steerd, "show", sid)
    ok(steerd, "budget", sid, "--tokens", "100000000")
    until(lambda: root_requests(steerd, sid) >= 2, what="the session to go on")
    ok(steerd, "veto", sid)
