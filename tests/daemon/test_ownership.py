"""One owner per session: fenced writes, several daemons on one Redis, takeover.

Store-level tests write through a real Redis; the daemon-level ones run several
supervisors in one process on one key prefix (each is a daemon as far as Redis can
tell: its own id, leases and loops), with the real SDK and the simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from daemon.agent_state import ROOT, AgentConfig, AgentState
from daemon.commands import execute, serve_relayed
from daemon.errors import CommandError
from daemon.fenced import BadKey, Conflict, NotOwner
from daemon.keys import NUDGE_CONSUMER, NUDGE_GROUP
from daemon.model_client import AnthropicModelClient
from daemon.store import NudgeChanges, Store
from daemon.supervisor import Supervisor
from protocol.commands import COMMAND_ADAPTER, Command
from protocol.events import AgentStatusChanged, SessionCreated
from protocol.sessions import SessionSpec, StartSession
from tests.fixtures.daemon import is_event, is_status, send_nudge, wait_for

TTL_MS = 3_000
MakeSupervisor = Callable[[], Awaitable[Supervisor]]


def start(task: str, workdir: Path) -> StartSession:
    return StartSession(task=task, workdir=str(workdir))


def command(**fields: object) -> Command:
    return COMMAND_ADAPTER.validate_python({"id": "c1", **fields})


async def until(condition: Callable[[], bool], what: str, within: float = 15.0) -> float:
    """Wait for `condition`; returns how long it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > within:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


@pytest.fixture
async def make_supervisor(
    store: Store, model_client: AnthropicModelClient
) -> AsyncIterator[MakeSupervisor]:
    """Daemons on the test's key prefix; each is stopped (leases released) at the end."""
    started: list[Supervisor] = []

    async def make() -> Supervisor:
        sup = Supervisor(store_like(store), model_client, default_model="claude-opus-5-5")
        sup.ownership._scan_s = 0.2  # takeovers within the test's patience
        sup.ownership.ttl_ms = TTL_MS
        serve_relayed(sup)
        await sup.start()
        started.append(sup)
        return sup

    yield make
    for sup in started:
        await sup.stop()
        await sup.store.aclose()


def store_like(store: Store) -> Store:
    """A store of its own (its own leases and caches) on the same Redis and prefix."""
    return Store(store.redis, store.keys)


# -- fenced writes ------------------------------------------------------------------


def root_config(sid: str, workdir: Path) -> AgentConfig:
    return AgentConfig(
        session=sid, task="t", workdir=str(workdir), model="claude-opus-5-5", system="s", tools=[]
    )


async def new_session(store: Store, sid: str, workdir: Path) -> AgentConfig:
    root = root_config(sid, workdir)
    spec = SessionSpec(
        id=sid, name=sid, task="t", workdir=str(workdir), model="claude-opus-5-5", created_at=1.0
    )
    frames = await store.create_session(
        spec, root, [SessionCreated(agent=ROOT, spec=spec)], daemon_id="d-one", ttl_ms=60_000
    )
    assert frames is not None
    return root


async def test_a_write_that_would_fail_at_exec_is_refused_whole(
    store: Store, tmp_path: Path
) -> None:
    root = await new_session(store, "s-exec", tmp_path)
    nudge = await send_nudge(store, "s-exec", "hello")
    [entry] = await store.read_nudges("s-exec", start=">")
    # A key of the wrong type: a MULTI would write the rest and fail on this one.
    await store.redis.set(store.keys.seen("s-exec", ROOT), "not a set")
    with pytest.raises(BadKey):
        await store.commit(
            root,
            messages=[{"role": "user", "content": "t"}],
            stored_messages=0,
            state=AgentState(commits=1),
            events=[AgentStatusChanged(agent=ROOT, status="running")],
            nudges=NudgeChanges(seen=[nudge.nudge_id], pending_added=[nudge]),
            acks=[entry.entry_id],
        )
    assert await store.redis.llen(store.keys.messages("s-exec", ROOT)) == 0
    assert not await store.step_landed(root, 1)  # the runner will not take it as landed
    assert await store.last_seq("s-exec") == 1  # only the session's first event
    assert await store.redis.hlen(store.keys.pending("s-exec", ROOT)) == 0
    pending = await store.redis.xpending(store.keys.nudges("s-exec"), NUDGE_GROUP)
    assert pending["pending"] == 1  # not acknowledged: it will be delivered again


async def test_a_stale_owner_is_refused_and_the_new_one_writes(
    store: Store, tmp_path: Path
) -> None:
    root = await new_session(store, "s-stale", tmp_path)
    first_token = store.tokens["s-stale"]
    await store.redis.delete(store.keys.lease("s-stale"))  # its lease expired
    other = store_like(store)
    assert await other.claim("s-stale", "d-two", 60_000, mode="orphan")
    assert int(other.tokens["s-stale"].rpartition(":")[2]) > int(first_token.rpartition(":")[2])
    step = {
        "messages": [{"role": "user", "content": "t"}],
        "stored_messages": 0,
        "state": AgentState(commits=1),
        "events": [AgentStatusChanged(agent=ROOT, status="running")],
    }
    with pytest.raises(NotOwner):
        await store.commit(root, **step)  # type: ignore[arg-type]
    await other.commit(root, **step)  # type: ignore[arg-type]
    with pytest.raises(Conflict):  # the same append again: the conversation moved on
        await other.commit(root, **step)  # type: ignore[arg-type]
    assert await store.redis.llen(store.keys.messages("s-stale", ROOT)) == 1
    await other.aclose()


async def test_claims_never_take_a_live_lease(store: Store, tmp_path: Path) -> None:
    await new_session(store, "s-live", tmp_path)
    other = store_like(store)
    assert not await other.claim("s-live", "d-two", 60_000, mode="orphan")
    assert not await other.claim("s-live", "d-two", 60_000, mode="mine")
    assert not await other.claim("s-live", "d-two", 60_000, mode="new")
    # The same daemon id, restarted, takes its own session back at once.
    assert await other.claim("s-live", "d-one", 60_000, mode="mine")
    await other.aclose()


# -- several daemons on one Redis ---------------------------------------------------


async def test_any_daemon_serves_every_session_and_carries_verbs_to_its_owner(
    make_supervisor: MakeSupervisor, store: Store, tmp_path: Path
) -> None:
    a, b = await make_supervisor(), await make_supervisor()
    spec = await a.create_session(start("[scenario:short] owned by a", tmp_path))
    assert spec.id in a.session_ids() and spec.id not in b.session_ids()
    idle = await wait_for(store, spec.id, is_status("idle"))

    # b lists it, reads its conversation and summary from Redis.
    listed = await execute(b, command(type="sessions"))
    assert spec.id in [s["spec"]["id"] for s in listed]  # type: ignore[index, union-attr]
    messages = await execute(b, command(type="messages", session=spec.name))
    assert messages == list(a.core(spec.id).messages)

    # A verb through b runs on a, with a's answers.
    await execute(b, command(type="pause", session=spec.id, author="bob"))
    await wait_for(store, spec.id, is_status("paused"), since=idle.seq)
    with pytest.raises(CommandError) as refused:
        await execute(b, command(type="approve", session=spec.id, call_id="nope"))
    assert refused.value.code == "not_pending"

    # A nudge sent through b's API reaches a's agent.
    nudge = await execute(b, command(type="nudge", session=spec.id, text="through b"))
    await execute(b, command(type="resume", session=spec.id))
    nudge_id = nudge["nudge_id"]  # type: ignore[index, call-overload]
    await wait_for(store, spec.id, is_event("nudge.delivered", nudge_id=nudge_id))


async def test_a_dead_daemons_sessions_are_taken_over_and_resumed(
    make_supervisor: MakeSupervisor, store: Store, tmp_path: Path
) -> None:
    a, b = await make_supervisor(), await make_supervisor()
    before = await a.create_session(start("[scenario:short] before", tmp_path))
    after = await a.create_session(start("[scenario:slow-tool] made after b started", tmp_path))
    await wait_for(store, after.id, is_event("tool.call"))

    await a.stop(release=False)  # as good as kill -9: nothing released, nothing said
    took = await until(
        lambda: {before.id, after.id} <= set(b.session_ids()), "b to take both", within=10
    )
    assert took <= TTL_MS / 1000 + 2
    # The running tool is reported as interrupted, exactly as after a restart.
    await wait_for(store, after.id, is_event("tool.result", is_error=True))
    nudge = await send_nudge(store, before.id, "still there?")
    await wait_for(store, before.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
    entries = await store.redis.xinfo_consumers(store.keys.nudges(before.id), NUDGE_GROUP)
    assert [c["name"] for c in entries] == [NUDGE_CONSUMER]


async def test_orphans_are_shared_between_the_live_daemons(
    make_supervisor: MakeSupervisor, store: Store, tmp_path: Path
) -> None:
    a = await make_supervisor()
    sids = [
        (await a.create_session(start(f"[scenario:short] spread {n}", tmp_path))).id
        for n in range(6)
    ]
    b, c = await make_supervisor(), await make_supervisor()
    assert not b.session_ids() and not c.session_ids()  # live owners are never preempted
    await a.stop(release=False)
    await until(lambda: len(b.session_ids()) + len(c.session_ids()) == 6, "a's sessions taken")
    assert sorted(b.session_ids() + c.session_ids()) == sorted(sids)
    assert len(b.session_ids()) == len(c.session_ids()) == 3  # ceil(6 / 2) each
