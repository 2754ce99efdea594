"""Session budgets: the limits, what a session's agents have spent, and the gate every
model call of the session passes.

An agent's core cannot see its session's total, so the supervisor keeps one
`SessionBudget` per session: the limits and the sum of its agents' committed spend,
moved by each commit's difference (never a sum over all agents per call). Before each
input its runner hands the core a `BudgetView` (the limits and what the other agents
spent); the core adds its own, up to date, when it is about to call the model, and
holds as `budget_reached` instead once the total has reached a limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.agent_state import AgentState
from daemon.errors import CommandError
from daemon.money import dollars
from protocol.sessions import Budget


@dataclass(frozen=True, slots=True)
class Spend:
    usd: float = 0.0
    tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.usd + other.usd, self.tokens + other.tokens)

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.usd - other.usd, self.tokens - other.tokens)


def spend_of(state: AgentState) -> Spend:
    """What one agent has spent: its cost and every token of its requests."""
    usage = state.usage
    cost = state.cost_usd
    return Spend(cost or 0.0, usage.prompt_tokens + usage.output_tokens)


def reached(budget: Budget, spent: Spend) -> str | None:
    """Why no more model calls may go out (`budget reached: $0.50 of $0.50`), if so."""
    if budget.usd is not None and spent.usd >= budget.usd:
        return f"budget reached: {dollars(spent.usd)} of {dollars(budget.usd)}"
    if budget.tokens is not None and spent.tokens >= budget.tokens:
        return f"budget reached: {spent.tokens:,} of {budget.tokens:,} tokens"
    return None


@dataclass(frozen=True, slots=True)
class BudgetView:
    """What an agent's core gates its next model call on: the session's limits and what
    its other agents have spent (as committed)."""

    limit: Budget
    others: Spend

    def reached(self, own: Spend) -> str | None:
        return reached(self.limit, self.others + own)


@dataclass(slots=True)
class SessionBudget:
    """One session's limits (None: none) and its agents' committed spend."""

    limit: Budget | None
    spent: Spend = Spend()

    def add(self, delta: Spend) -> None:
        self.spent = self.spent + delta

    def view(self, own: Spend) -> BudgetView | None:
        """The gate for an agent whose committed spend is `own`."""
        if self.limit is None:
            return None
        return BudgetView(self.limit, self.spent - own)

    def reached(self) -> str | None:
        return None if self.limit is None else reached(self.limit, self.spent)


def merged(current: Budget | None, *, usd: float | None, tokens: int | None) -> Budget:
    """The budget after `steer budget`: the limits given, the others as they were."""
    if usd is None and tokens is None:
        raise CommandError("invalid", "give a budget to set: usd, tokens or both")
    base = current or Budget()
    return Budget(
        usd=usd if usd is not None else base.usd,
        tokens=tokens if tokens is not None else base.tokens,
    )


def refuse_unpriced(
    budget: Budget | None, model: str, *, priced: bool, what: str = "a USD budget"
) -> None:
    """A USD budget needs the model's price (`priced`): without one, spend is unknown.
    (`conflict`, not `invalid`: the request is well formed; the daemon's prices refuse it.)"""
    if budget is not None and budget.usd is not None and not priced:
        raise CommandError(
            "conflict",
            f"{what} needs the price of {model!r}, which steer does not know; "
            "set a token budget instead (or give the model a price)",
        )
