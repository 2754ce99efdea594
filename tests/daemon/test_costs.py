"""Cost accounting against the simulator, checked by hand: the expected dollars are
computed here from the simulator's recorded usage and the published prices, never by
the daemon's own functions. (The CLI's view of costs is in tests/http/test_cli_costs.py.)"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.catalog import DEFAULT_MODEL
from daemon.cost_report import cost_report
from daemon.model_client import AnthropicModelClient
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.envelope import Frame
from protocol.events import ModelCancelled, ModelReplied, NudgeDelivered
from protocol.nudges import SendNudge
from protocol.sessions import StartSession
from protocol.websocket import TextDelta
from tests.fixtures.daemon import is_event, is_status, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle

#: claude-opus-5-5 (the default model), USD per million tokens, as published.
INPUT, OUTPUT, WRITE_5M, READ = 4.0, 20.0, 5.0, 0.20


def dollars(*, input: int, write: int, read: int, output: int) -> float:
    return (input * INPUT + write * WRITE_5M + read * READ + output * OUTPUT) / 1_000_000


def recorded_usage(simulator: SimulatorHandle, task: str) -> list[dict[str, Any]]:
    """The usage the simulator returned for each request of the session, in order."""
    usages = []
    for request in simulator.requests():
        body: Any = request["body"]
        if body["messages"][0]["content"] == task:
            usage: Any = request["usage"]
            assert usage["cache_creation"]["ephemeral_1h_input_tokens"] == 0  # all 5-minute
            usages.append(usage)
    return usages


def prompt(usage: dict[str, Any]) -> int:
    return int(
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )


@pytest.fixture
async def deltas_and_supervisor(
    store: Store, model_client: AnthropicModelClient
) -> AsyncIterator[tuple[list[TextDelta], Supervisor]]:
    deltas: list[TextDelta] = []
    supervisor = Supervisor(
        store, model_client, default_model=DEFAULT_MODEL, on_delta=deltas.append
    )
    await supervisor.start()
    yield deltas, supervisor
    await supervisor.stop()


async def test_a_cancelled_request_and_a_nudge_cost_what_the_usage_and_prices_say(
    deltas_and_supervisor: tuple[list[TextDelta], Supervisor],
    store: Store,
    simulator: SimulatorHandle,
    tmp_path: Path,
) -> None:
    deltas, supervisor = deltas_and_supervisor
    task = "[scenario:cost-stall] weigh it"
    spec = await supervisor.create_session(StartSession(task=task, workdir=str(tmp_path)))
    # The first reply streams one 4-character piece, then stalls for 100 s.
    deadline = time.monotonic() + 15
    while not deltas:
        assert time.monotonic() < deadline, "no text streamed"
        await asyncio.sleep(0.01)
    streamed = "".join(d.text for d in deltas)
    assert streamed == "Weig"

    await supervisor.send_nudge(
        spec.id, SendNudge(text="stop and summarise", mode="redirect", author="ann")
    )
    cancelled = await wait_for(store, spec.id, is_event("model.cancelled", reason="redirect"))
    delivered = await wait_for(store, spec.id, is_event("nudge.delivered"), since=cancelled.seq)
    idle = await wait_for(store, spec.id, is_status("idle"), since=delivered.seq)
    first, second = recorded_usage(simulator, task)

    # The cancelled request: message_start's input and cache figures, and the output
    # streamed before the cancel, 4 characters to a token.
    assert isinstance(cancelled.event, ModelCancelled)
    out = math.ceil(len(streamed) / 4)
    assert out < first["output_tokens"]  # the whole reply would have been more
    assert cancelled.event.usage is not None
    assert cancelled.event.usage.model_dump() == {
        "input_tokens": first["input_tokens"],
        "cache_creation_input_tokens": first["cache_creation_input_tokens"],
        "cache_read_input_tokens": first["cache_read_input_tokens"],
        "output_tokens": out,
    }
    cancelled_usd = dollars(
        input=first["input_tokens"],
        write=first["cache_creation_input_tokens"],
        read=first["cache_read_input_tokens"],
        output=out,
    )
    assert cancelled_usd > 0
    assert cancelled.event.request_cost_usd == pytest.approx(cancelled_usd)
    assert cancelled.event.cost_usd == pytest.approx(cancelled_usd)

    # The nudge: the tokens its note added (the simulator's count of the note's block),
    # the carrying request's cost, and that request with a lost cache.
    assert isinstance(delivered.event, NudgeDelivered)
    note = {"type": "text", "text": "Operator note from ann: stop and summarise"}
    note_tokens = math.ceil(len(json.dumps(note, sort_keys=True, separators=(",", ":"))) / 4)
    assert prompt(second) - prompt(first) == note_tokens
    assert delivered.event.tokens_added == note_tokens
    request_usd = dollars(
        input=second["input_tokens"],
        write=second["cache_creation_input_tokens"],
        read=second["cache_read_input_tokens"],
        output=second["output_tokens"],
    )
    cold_usd = dollars(
        input=second["input_tokens"],
        write=second["cache_creation_input_tokens"] + second["cache_read_input_tokens"],
        read=0,
        output=second["output_tokens"],
    )
    assert second["cache_read_input_tokens"] == prompt(first)  # the prefix was kept
    assert delivered.event.request_cost_usd == pytest.approx(request_usd)
    assert delivered.event.cost_if_cache_lost_usd == pytest.approx(cold_usd)
    saving = cold_usd - request_usd
    assert saving == pytest.approx(prompt(first) * (WRITE_5M - READ) / 1_000_000)
    assert delivered.event.cache_saving_usd == pytest.approx(saving)

    # The reply, the agent and the session include the cancelled request.
    frames = await store.read_events(spec.id, since=0)
    (reply,) = [f.event for f in frames if isinstance(f.event, ModelReplied)]
    assert reply.request_cost_usd == pytest.approx(request_usd)
    assert reply.cost_usd == pytest.approx(cancelled_usd + request_usd)
    summary = await summary_at(supervisor, spec.id, idle)
    assert summary.cost_usd == pytest.approx(cancelled_usd + request_usd)
    assert summary.usage.output_tokens == out + second["output_tokens"]
    assert summary.usage.prompt_tokens == prompt(first) + prompt(second)

    # steer cost's report, from the same events.
    report = cost_report(summary, frames)
    (agent,) = report.agents
    assert (agent.requests, agent.cancelled) == (2, 1)
    assert agent.cancelled_cost_usd == pytest.approx(cancelled_usd)
    assert agent.tree_cost_usd == pytest.approx(cancelled_usd + request_usd)
    (nudge,) = report.nudges
    assert (nudge.author, nudge.agent, nudge.request_no) == ("ann", "root", 2)
    assert nudge.tokens_added == note_tokens
    assert report.cache_saving_usd == pytest.approx(saving)
    assert not report.simulated


async def test_a_model_with_no_price_counts_tokens_and_never_guesses_a_cost(
    store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    supervisor = Supervisor(store, model_client, default_model="claude-sonnet-5", simulated=True)
    await supervisor.start()
    try:
        spec = await supervisor.create_session(
            StartSession(task="[scenario:short] no price", workdir=str(tmp_path))
        )
        idle = await wait_for(store, spec.id, is_status("idle"))
        assert spec.simulated
        await supervisor.send_nudge(spec.id, SendNudge(text="one more thing", author="ann"))
        delivered = await wait_for(store, spec.id, is_event("nudge.delivered"), since=idle.seq)
        assert isinstance(delivered.event, NudgeDelivered)
        assert delivered.event.tokens_added is not None and delivered.event.tokens_added > 0
        assert delivered.event.request_cost_usd is None
        assert delivered.event.cost_if_cache_lost_usd is None
        assert delivered.event.cache_saving_usd is None
        done = await wait_for(store, spec.id, is_status("idle"), since=delivered.seq)
        summary = await summary_at(supervisor, spec.id, done)
        assert summary.cost_usd is None
        assert summary.usage.prompt_tokens > 0 and summary.usage.output_tokens > 0
        frames: list[Frame] = await store.read_events(spec.id, since=0)
        replies = [f.event for f in frames if isinstance(f.event, ModelReplied)]
        assert len(replies) == 4
        assert all(r.cost_usd is None and r.request_cost_usd is None for r in replies)
        report = cost_report(summary, frames)
        assert report.cost_usd is None and report.agents[0].cost_usd is None
        assert report.simulated
    finally:
        await supervisor.stop()
