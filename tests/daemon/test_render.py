"""What `steer ls` prints: sessions that need the operator first and marked, pure
rendering of summaries as the daemon serves them."""

from __future__ import annotations

from daemon.render import session_table
from protocol.sessions import AgentStatus, AgentSummary, SessionSpec, SessionSummary


def summary(sid: str, status: AgentStatus) -> SessionSummary:
    spec = SessionSpec(id=sid, name=sid, task="t", workdir="/w", model="m", created_at=1.0)
    root = AgentSummary(session=sid, agent="root", status=status, model="m")
    return SessionSummary(spec=spec, status=status, agents=[root])


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
