"""Budgets that pause (issue 12, item 3): at the session's budget no model request goes
out; every agent stops before its next call as `budget_reached`, and raising the
budget lets them go on with the very request they held. Real Redis, the real SDK, the
simulator (whose recorded requests show what was sent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import JsonValue

from daemon.catalog import DEFAULT_MODEL
from daemon.errors import CommandError
from daemon.model_client import AnthropicModelClient
from daemon.money import dollars
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.events import BudgetSet, ModelRequestSent
from protocol.sessions import Budget, StartSession
from tests.fixtures.daemon import is_event, is_status, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle

#: The request fields the core renders that the simulator receives as they are.
SENT = ("model", "max_tokens", "system", "tools", "messages")


def requests_of(simulator: SimulatorHandle, task: str) -> list[dict[str, JsonValue]]:
    bodies = [r["body"] for r in simulator.requests()]
    return [b for b in bodies if b["messages"][0]["content"] == task]  # type: ignore[index]


def sent_part(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
    return {k: request[k] for k in SENT}


async def test_a_usd_budget_pauses_before_the_next_call_and_raising_it_sends_that_call(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:steady] usd budget {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), budget_usd=0.000001)
    )
    held = await wait_for(store, spec.id, is_status("budget_reached"))
    summary = await summary_at(supervisor, spec.id, held)
    spent = summary.cost_usd
    assert spent is not None and spent >= 0.000001
    reason = f"budget reached: {dollars(spent)} of $0.000001"
    assert held.event.reason == reason  # type: ignore[union-attr]
    assert summary.status == "budget_reached" and summary.budget == Budget(usd=0.000001)
    # One request went out; the next one is held, rendered but never sent.
    assert len(requests_of(simulator, task)) == 1
    core = supervisor.core(spec.id)
    assert core.state.requests == 1 and core.messages[-1]["role"] == "user"
    would_send = sent_part(core.render_request())

    # Raised by a hair: exactly one more request goes out, the one held, then it stops.
    budget = await supervisor.set_budget(spec.id, usd=spent * 1.000001, tokens=None, author="ann")
    assert budget == Budget(usd=spent * 1.000001)
    again = await wait_for(store, spec.id, is_status("budget_reached"), since=held.seq)
    requests = requests_of(simulator, task)
    assert len(requests) == 2
    assert sent_part(requests[1]) == would_send
    # Between the hold and the raise, nothing was asked of the model.
    frames = await store.read_events(spec.id, since=held.seq)
    kinds = [f.event for f in frames if f.seq < again.seq]
    assert isinstance(kinds[0], BudgetSet) and kinds[0].author == "ann"
    assert sum(isinstance(e, ModelRequestSent) for e in kinds) == 1


async def test_a_token_budget_counts_every_token_and_pauses_the_same_way(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:steady] token budget {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), budget_tokens=1)
    )
    held = await wait_for(store, spec.id, is_status("budget_reached"))
    summary = await summary_at(supervisor, spec.id, held)
    usage = summary.usage
    tokens = (
        usage.input_tokens
        + usage.cache_creation_input_tokens
        + usage.cache_read_input_tokens
        + usage.output_tokens
    )
    assert summary.tokens == tokens > 1
    assert held.event.reason == f"budget reached: {tokens:,} of 1 tokens"  # type: ignore[union-attr]
    assert len(requests_of(simulator, task)) == 1
    would_send = sent_part(supervisor.core(spec.id).render_request())

    # A resume does not get past the budget: only raising it does.
    with pytest.raises(CommandError, match="raise it"):
        await supervisor.resume_agents(spec.id, "root", author="ann")
    await supervisor.set_budget(spec.id, usd=None, tokens=tokens + 1, author="ann")
    await wait_for(store, spec.id, is_status("budget_reached"), since=held.seq)
    requests = requests_of(simulator, task)
    assert len(requests) == 2 and sent_part(requests[1]) == would_send


async def test_subagents_count_toward_the_session_budget_and_stop_before_their_first_call(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:spawn-two] budget {tmp_path.name}"
    before = len(simulator.requests())
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), budget_tokens=1)
    )
    # The root's first reply spent the budget: its children never send a request.
    await wait_for(store, spec.id, is_status("budget_reached", "a1"))
    await wait_for(store, spec.id, is_status("budget_reached", "a2"))
    assert len(simulator.requests()) - before == 1  # the root's, and no child's

    await supervisor.set_budget(spec.id, usd=None, tokens=10_000_000, author="ann")
    done = await wait_for(store, spec.id, is_status("idle"))
    summary = await summary_at(supervisor, spec.id, done)
    assert [a.status for a in summary.agents] == ["idle", "done", "done"]
    assert summary.tokens == sum(
        a.usage.prompt_tokens + a.usage.output_tokens for a in summary.agents
    )


async def test_the_budget_and_the_hold_survive_a_daemon_restart(
    store: Store, model_client: AnthropicModelClient, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:steady] restart budget {tmp_path.name}"
    first = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await first.start()
    spec = await first.create_session(
        StartSession(task=task, workdir=str(tmp_path), budget_tokens=1)
    )
    held = await wait_for(store, spec.id, is_status("budget_reached"))
    await first.stop()

    second = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await second.start()
    try:
        summary = second.summary(spec.id)
        assert summary.status == "budget_reached" and summary.budget == Budget(tokens=1)
        assert len(requests_of(simulator, task)) == 1  # still held after the restart
        would_send = sent_part(second.core(spec.id).render_request())
        await second.set_budget(spec.id, usd=None, tokens=summary.tokens + 1, author="ann")
        await wait_for(store, spec.id, is_status("budget_reached"), since=held.seq)
        requests = requests_of(simulator, task)
        assert len(requests) == 2 and sent_part(requests[1]) == would_send
        assert await store.load_budget(spec.id) == Budget(tokens=summary.tokens + 1)
    finally:
        await second.stop()


async def test_a_daemon_default_budget_applies_when_the_start_sets_none(
    store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    sup = Supervisor(
        store, model_client, default_model=DEFAULT_MODEL, default_budget=Budget(tokens=1)
    )
    await sup.start()
    try:
        spec = await sup.create_session(
            StartSession(task="[scenario:steady] default budget", workdir=str(tmp_path))
        )
        await wait_for(store, spec.id, is_status("budget_reached"))
        own = await sup.create_session(
            StartSession(task="[scenario:short] own", workdir=str(tmp_path), budget_usd=5)
        )
        assert sup.summary(own.id).budget == Budget(usd=5)
    finally:
        await sup.stop()


async def test_a_usd_budget_on_a_model_with_no_price_is_refused(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    start = StartSession(
        task="no price", workdir=str(tmp_path), model="claude-unpriced-1", budget_usd=1
    )
    with pytest.raises(CommandError, match="needs the price of 'claude-unpriced-1'") as refused:
        await supervisor.create_session(start)
    assert refused.value.code == "conflict"
    # A token budget needs no price.
    spec = await supervisor.create_session(
        start.model_copy(update={"budget_usd": None, "budget_tokens": 1_000})
    )
    assert supervisor.summary(spec.id).budget == Budget(tokens=1_000)


async def test_pausing_an_agent_held_by_its_budget_holds_it_past_a_raise(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:steady] pause budget {tmp_path.name}"
    spec = await supervisor.create_session(
        StartSession(task=task, workdir=str(tmp_path), budget_tokens=1)
    )
    await wait_for(store, spec.id, is_status("budget_reached"))
    await supervisor.pause_agents(spec.id, None, now=False, author="ann")
    paused = await wait_for(store, spec.id, is_status("paused"))
    await supervisor.set_budget(spec.id, usd=None, tokens=10_000_000, author="ann")
    assert supervisor.core(spec.id).state.status == "paused"
    assert len(requests_of(simulator, task)) == 1
    await supervisor.resume_agents(spec.id, None, author="ann")
    await wait_for(store, spec.id, is_event("model.reply", request_no=2), since=paused.seq)
