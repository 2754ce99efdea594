"""What a restart costs: sessions loaded in batches, agents at rest resumed as rows (no
task, no conversation in memory, no commit) until a nudge wakes them, and session
names reserved without reading every name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.agent_state import AgentState
from daemon.catalog import DEFAULT_MODEL
from daemon.errors import CommandError
from daemon.model_client import AnthropicModelClient
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.sessions import StartSession
from tests.daemon.test_ownership import until
from tests.daemon.test_sessions import requests_of
from tests.fixtures.daemon import is_event, is_status, send_nudge, wait_for
from tests.fixtures.simulator import SimulatorHandle


def start(task: str, workdir: Path, name: str | None = None) -> StartSession:
    return StartSession(task=task, workdir=str(workdir), name=name)


def agent_tasks(sid: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"agent {sid}/")]


async def stored_state(store: Store, sid: str) -> AgentState:
    [(_, state)] = await store.load_agent_states(sid)
    return state


async def test_idle_agents_resume_as_rows_until_a_nudge_wakes_them(
    store: Store, model_client: AnthropicModelClient, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    first = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await first.start()
    specs = [
        await first.create_session(start(f"[scenario:short] row {n} {tmp_path.name}", tmp_path))
        for n in range(3)
    ]
    for spec in specs:
        await wait_for(store, spec.id, is_status("idle"))
    await until(lambda: all(not agent_tasks(s.id) for s in specs), "the agents to rest")
    await first.stop()
    seqs = {s.id: await store.last_seq(s.id) for s in specs}
    states = {s.id: await stored_state(store, s.id) for s in specs}

    second = Supervisor(Store(store.redis, store.keys), model_client, default_model=DEFAULT_MODEL)
    await second.start()
    try:
        for spec in specs:
            assert second.owns(spec.id)
            assert second.summary(spec.id).status == "idle"
            assert not agent_tasks(spec.id)  # no task waits on its inbox
            assert second.core(spec.id).messages == ()  # nor is its conversation read
            conversation = await store.load_messages(spec.id, "root")
            assert await second.messages(spec.id) == conversation and conversation
            # No commit: neither a frame nor a write of its state.
            assert await store.last_seq(spec.id) == seqs[spec.id]
            assert await stored_state(store, spec.id) == states[spec.id]

        woken, *others = specs
        before = await store.load_messages(woken.id, "root")
        nudge = await send_nudge(store, woken.id, "one more thing")
        await wait_for(store, woken.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
        await wait_for(store, woken.id, is_status("idle"), since=seqs[woken.id])
        # The request went out with the whole conversation read back in front of it.
        assert requests_of(simulator, woken.task)[-1]["messages"][: len(before)] == before  # type: ignore[index]
        await until(lambda: not agent_tasks(woken.id), "the woken agent to rest again")
        assert second.core(woken.id).messages == tuple(await store.load_messages(woken.id, "root"))
        for spec in others:
            assert await store.last_seq(spec.id) == seqs[spec.id]
    finally:
        await second.stop()
        await second.store.aclose()


async def test_an_agent_at_rest_lets_go_of_its_conversation_and_reads_it_back(
    store: Store, model_client: AnthropicModelClient, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    supervisor = Supervisor(store, model_client, default_model=DEFAULT_MODEL, unload_after_s=0)
    await supervisor.start()
    try:
        task = f"[scenario:short] let go {tmp_path.name}"
        spec = await supervisor.create_session(start(task, tmp_path))
        idle = await wait_for(store, spec.id, is_status("idle"))
        await until(lambda: supervisor.core(spec.id).messages == (), "the conversation to go")
        before = await supervisor.messages(spec.id)
        assert before == await store.load_messages(spec.id, "root") and before

        nudge = await send_nudge(store, spec.id, "and the docs")
        await wait_for(store, spec.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
        await wait_for(store, spec.id, is_status("idle"), since=idle.seq)
        # The request went out with the whole conversation read back in front of it.
        assert requests_of(simulator, task)[-1]["messages"][: len(before)] == before  # type: ignore[index]
        assert supervisor.summary(spec.id).status == "idle"
    finally:
        await supervisor.stop()


async def test_default_names_are_numbered_and_any_daemon_resolves_them(
    supervisor: Supervisor,
    store: Store,
    model_client: AnthropicModelClient,
    tmp_path: Path,
) -> None:
    task = f"[scenario:short] same task {tmp_path.name}"
    specs = [await supervisor.create_session(start(task, tmp_path)) for _ in range(3)]
    stem = specs[0].name
    assert [s.name for s in specs] == [stem, f"{stem}-2", f"{stem}-3"]
    with pytest.raises(CommandError, match="taken by session"):
        await supervisor.create_session(start(task, tmp_path, name=f"{stem}-2"))
    named = await supervisor.create_session(start(task, tmp_path, name="picked"))

    other = Supervisor(Store(store.redis, store.keys), model_client, default_model=DEFAULT_MODEL)
    try:  # not started: it owns nothing, and resolves from Redis
        assert await other.directory.resolve(f"{stem}-3") == specs[2].id
        assert await other.directory.resolve("picked") == named.id
        assert await other.directory.resolve(named.id) == named.id
        assert await other.directory.resolve(named.id[:-1]) in {s.id for s in [*specs, named]}
    finally:
        await other.store.aclose()
