"""The session table's rows: sessions sorted and filtered, each followed by its
agents as a tree (subagents under their parent). Pure functions over the model.

A session's row stands for its root agent and the session as a whole: it shows the
root's state and activity and the session's totals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from tui.fmt import STATUS_ORDER
from tui.model import ROOT, AgentView, DashboardModel, SessionView

SortKey = Literal["attention", "newest", "name", "status", "cost", "tokens"]
SORT_KEYS: tuple[SortKey, ...] = ("attention", "newest", "name", "status", "cost", "tokens")

RowKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Row:
    session: SessionView
    agent: AgentView
    depth: int
    #: Tree drawing before the label, e.g. "  ├ ".
    prefix: str
    has_children: bool
    collapsed: bool

    @property
    def key(self) -> RowKey:
        return (self.session.id, self.agent.agent)

    @property
    def is_session(self) -> bool:
        return self.depth == 0


def _session_key(sort: SortKey) -> Callable[[SessionView], tuple[float | str, ...]]:
    match sort:
        case "attention":
            return lambda s: (
                0 if s.needs_attention else 1,
                STATUS_ORDER[s.status],
                -s.spec.created_at,
            )
        case "newest":
            return lambda s: (-s.spec.created_at, s.id)
        case "name":
            return lambda s: (s.spec.name.lower(), s.id)
        case "status":
            return lambda s: (STATUS_ORDER[s.status], -s.spec.created_at)
        case "cost":
            # Unknown cost (no price) after every priced one.
            return lambda s: (s.cost_usd is None, -(s.cost_usd or 0.0), -s.spec.created_at)
        case "tokens":
            return lambda s: (-s.tokens, -s.spec.created_at)


def matches(session: SessionView, words: list[str]) -> bool:
    """Every word appears in the session's id, name, task, model or state, or in one
    of its agents' id, name or state."""
    if not words:
        return True
    parts = [session.id, session.spec.name, session.spec.task, session.spec.model, session.status]
    for agent in session.agents.values():
        parts += [agent.agent, agent.name or "", agent.status]
    haystack = " ".join(parts).lower()
    return all(word in haystack for word in words)


def build_rows(
    model: DashboardModel,
    *,
    sort: SortKey = "attention",
    reverse: bool = False,
    query: str = "",
    collapsed: set[str] | frozenset[str] = frozenset(),
) -> list[Row]:
    words = query.lower().split()
    sessions = [s for s in model.sessions.values() if matches(s, words)]
    sessions.sort(key=_session_key(sort), reverse=reverse)
    rows: list[Row] = []
    for session in sessions:
        root = session.root
        if root is None:
            continue
        folded = session.id in collapsed
        children = session.children(ROOT)
        rows.append(Row(session, root, 0, "", bool(children), folded))
        if not folded:
            rows.extend(_subtree(session, children, 1, ""))
    return rows


def _subtree(
    session: SessionView, agents: list[AgentView], depth: int, indent: str
) -> Iterable[Row]:
    for i, agent in enumerate(agents):
        last = i == len(agents) - 1
        children = session.children(agent.agent)
        yield Row(session, agent, depth, f"{indent}{'└' if last else '├'} ", bool(children), False)
        yield from _subtree(session, children, depth + 1, indent + ("  " if last else "│ "))
