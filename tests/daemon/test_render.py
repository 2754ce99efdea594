"""What `steer ls` prints: sessions that need the operator first and marked, pure
rendering of summaries as the daemon serves them (JSON, as dicts)."""

from __future__ import annotations

from typing import Any

from daemon.render import session_cost, session_table, session_tokens
from protocol.sessions import AgentStatus, AgentSummary, SessionSpec, SessionSummary, Usage


def summary(sid: str, status: AgentStatus) -> dict[str, Any]:
    spec = SessionSpec(id=sid, name=sid, task="t", workdir="/w", model="m", created_at=1.0)
    root = AgentSummary(session=sid, agent="root", status=status, model="m")
    return SessionSummary(spec=spec, status=status, agents=[root]).model_dump(mode="json")


def test_ls_lists_what_needs_the_operator_first_and_marks_it() -> None:
    sessions = [
        summary("s-idle", "idle"),
        summary("s-ok", "awaiting_approval"),
        summary("s-stuck", "needs_human"),
        summary("s-failed", "failed"),
    ]
    header, *rows, _, footer = session_table(sessions).splitlines()
    assert header.startswith("ID ")
    states = [(row.split()[0], " ".join(row.split()[2:4])) for row in rows]
    assert states == [
        ("s-stuck", "! needs_human"),
        ("s-failed", "! failed"),
        ("s-ok", "? awaiting_approval"),
        ("s-idle", "idle 1"),
    ]
    assert footer == "needs a human (steer show SESSION says why, with the evidence): s-stuck"
    # Nothing stuck, nothing more than the table.
    assert len(session_table([summary("s-idle", "idle")]).splitlines()) == 2


def test_totals_from_the_json_are_the_models() -> None:
    spec = SessionSpec(id="s-1", name="s-1", task="t", workdir="/w", model="m", created_at=1.0)
    usage = Usage(
        input_tokens=3, cache_creation_input_tokens=5, cache_read_input_tokens=7, output_tokens=11
    )
    agents = [
        AgentSummary(session="s-1", agent="root", status="running", model="m", usage=usage),
        AgentSummary(session="s-1", agent="a1", status="done", model="m", cost_usd=0.25),
    ]
    model = SessionSummary(spec=spec, status="running", agents=agents)
    assert session_tokens(model.model_dump(mode="json")) == model.tokens == 26
    assert session_cost(model.model_dump(mode="json")) == model.cost_usd == 0.25
    agents[0].cost_usd = None  # a model with no price: the total is unknown
    assert session_cost(model.model_dump(mode="json")) is model.cost_usd is None
