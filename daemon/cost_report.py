"""`steer cost`: what a session cost, by agent (subagent trees rolled up under their
parents) and by nudge, from its summary and its events. Pure: no I/O.

Agents' totals are their summaries' (every request, cancelled ones included); the
cancelled requests are counted from `model.cancelled`; the nudges from
`nudge.delivered` (tokens added, the carrying request's cost, its cost had the cache
been lost, the saving), with their authors from `nudge.received`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from daemon.money import usd_text
from protocol.envelope import Frame
from protocol.events import ModelCancelled, NudgeDelivered, NudgeReceived
from protocol.sessions import AgentSummary, SessionSummary, Usage
from protocol.text import columns


class AgentCost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str
    name: str | None = None
    parent: str | None = None
    #: 0 for a root agent, 1 for its children...
    depth: int = 0
    model: str
    requests: int
    cancelled: int = 0
    #: What its cancelled requests cost (included in `cost_usd`).
    cancelled_cost_usd: float | None = 0.0
    usage: Usage
    #: None: no price for its model.
    cost_usd: float | None
    #: It and every subagent under it.
    tree_cost_usd: float | None
    tree_tokens: int


class NudgeCost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nudge_id: str
    author: str | None
    agent: str
    request_no: int
    tokens_added: int | None
    request_cost_usd: float | None
    cost_if_cache_lost_usd: float | None
    cache_saving_usd: float | None


class CostReport(BaseModel):
    """`steer cost --json`: one object."""

    model_config = ConfigDict(extra="forbid")

    session: str
    name: str
    simulated: bool
    usage: Usage
    requests: int
    cancelled: int
    #: None: some agent's model has no price.
    cost_usd: float | None
    agents: list[AgentCost]
    nudges: list[NudgeCost]
    nudge_tokens_added: int
    #: What keeping the prefix cached saved over every nudge's carrying request.
    cache_saving_usd: float | None


def cost_report(session: SessionSummary, frames: Iterable[Frame]) -> CostReport:
    cancelled: dict[str, list[float | None]] = {}
    authors: dict[str, str] = {}
    delivered: list[NudgeDelivered] = []
    for frame in frames:
        match frame.event:
            case ModelCancelled(usage=usage) as event if usage is not None:
                cancelled.setdefault(event.agent, []).append(event.request_cost_usd)
            case NudgeReceived(nudge=nudge):
                authors[nudge.nudge_id] = nudge.author
            case NudgeDelivered() as event:
                delivered.append(event)
    agents = [
        _agent_cost(agent, depth, subtree, cancelled.get(agent.agent, []))
        for agent, depth, subtree in _tree(session.agents)
    ]
    nudges = [
        NudgeCost(
            nudge_id=d.nudge_id,
            author=authors.get(d.nudge_id),
            agent=d.agent,
            request_no=d.request_no,
            tokens_added=d.tokens_added,
            request_cost_usd=d.request_cost_usd,
            cost_if_cache_lost_usd=d.cost_if_cache_lost_usd,
            cache_saving_usd=d.cache_saving_usd,
        )
        for d in delivered
    ]
    return CostReport(
        session=session.spec.id,
        name=session.spec.name,
        simulated=session.spec.simulated,
        usage=session.usage,
        requests=session.requests,
        cancelled=sum(a.cancelled for a in agents),
        cost_usd=session.cost_usd,
        agents=agents,
        nudges=nudges,
        nudge_tokens_added=sum(n.tokens_added or 0 for n in nudges),
        cache_saving_usd=_sum(n.cache_saving_usd for n in nudges),
    )


def cost_table(report: CostReport) -> str:
    """The report as text: a title line, the agents' table, the nudges' table, totals."""
    sim = report.simulated

    def cell(usd: float | None) -> str:
        return usd_text(usd, simulated=sim, compact=True)

    usage = report.usage
    title = (
        f"{report.session} ({report.name}): {usd_text(report.cost_usd, simulated=sim)}, "
        f"{usage.prompt_tokens + usage.output_tokens:,} tokens, {report.requests} requests"
        f" ({report.cancelled} cancelled)"
    )
    lines = [title]
    if sim:
        lines.append("simulated: the bundled simulator's token counts at the API's prices")
    agent_titles = ("AGENT", "MODEL", "REQS", "CANCELLED", "INPUT", "CACHE WRITE", "CACHE READ")
    rows = [(*agent_titles, "OUTPUT", "COST", "TREE COST")]
    for a in report.agents:
        label = "  " * a.depth + a.agent + (f" ({a.name})" if a.name else "")
        cancelled = f"{a.cancelled} ({cell(a.cancelled_cost_usd)})" if a.cancelled else "0"
        rows.append(
            (
                label,
                a.model,
                str(a.requests),
                cancelled,
                f"{a.usage.input_tokens:,}",
                f"{a.usage.cache_creation_input_tokens:,}",
                f"{a.usage.cache_read_input_tokens:,}",
                f"{a.usage.output_tokens:,}",
                cell(a.cost_usd),
                f"{cell(a.tree_cost_usd)}, {a.tree_tokens:,} tokens",
            )
        )
    lines += ["", columns(rows)]
    if report.nudges:
        nudge_titles = ("NUDGE", "AUTHOR", "AGENT", "REQUEST", "TOKENS ADDED", "REQUEST COST")
        nudge_rows = [(*nudge_titles, "IF CACHE LOST", "SAVING")]
        for n in report.nudges:
            nudge_rows.append(
                (
                    n.nudge_id,
                    n.author or "-",
                    n.agent,
                    str(n.request_no),
                    "-" if n.tokens_added is None else f"{n.tokens_added:,}",
                    cell(n.request_cost_usd),
                    cell(n.cost_if_cache_lost_usd),
                    cell(n.cache_saving_usd),
                )
            )
        total = ("total", "", "", "", f"{report.nudge_tokens_added:,}", "", "")
        nudge_rows.append((*total, cell(report.cache_saving_usd)))
        lines += ["", columns(nudge_rows)]
    else:
        lines += ["", "no nudges delivered"]
    lines += [
        "",
        f"total: {usd_text(report.cost_usd, simulated=sim)}; cache saving on nudges "
        f"(the prefix kept): {usd_text(report.cache_saving_usd, simulated=sim)}",
    ]
    return "\n".join(lines)


def _agent_cost(
    agent: AgentSummary, depth: int, subtree: list[AgentSummary], cancelled: list[float | None]
) -> AgentCost:
    return AgentCost(
        agent=agent.agent,
        name=agent.name,
        parent=agent.parent,
        depth=depth,
        model=agent.model,
        requests=agent.requests,
        cancelled=len(cancelled),
        cancelled_cost_usd=_sum(cancelled),
        usage=agent.usage,
        cost_usd=agent.cost_usd,
        tree_cost_usd=_sum(a.cost_usd for a in subtree),
        tree_tokens=sum(a.usage.prompt_tokens + a.usage.output_tokens for a in subtree),
    )


def _tree(
    agents: Sequence[AgentSummary],
) -> list[tuple[AgentSummary, int, list[AgentSummary]]]:
    """Depth first, children under their parents: each agent, its depth, its subtree."""
    children: dict[str | None, list[AgentSummary]] = {}
    known = {a.agent for a in agents}
    for agent in agents:
        parent = agent.parent if agent.parent in known else None
        children.setdefault(parent, []).append(agent)
    out: list[tuple[AgentSummary, int, list[AgentSummary]]] = []

    def walk(agent: AgentSummary, depth: int) -> list[AgentSummary]:
        entry: tuple[AgentSummary, int, list[AgentSummary]] = (agent, depth, [agent])
        out.append(entry)
        for child in children.get(agent.agent, []):
            entry[2].extend(walk(child, depth + 1))
        return entry[2]

    for root in children.get(None, []):
        walk(root, 0)
    return out


def _sum(costs: Iterable[float | None]) -> float | None:
    """A total that is unknown if any part of it is."""
    total = 0.0
    for cost in costs:
        if cost is None:
            return None
        total += cost
    return total
