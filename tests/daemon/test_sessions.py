"""Sessions end to end in one process: real Redis, the real SDK, the simulator."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

from redis.asyncio import Redis

from daemon.agent_core import IDLE_USER_TURN
from daemon.keys import NUDGE_CONSUMER, NUDGE_GROUP, Keys
from daemon.model_client import AnthropicModelClient
from daemon.placement import placement_problems
from daemon.redis_server import RedisServer
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.events import ModelReplied, NudgeDelivered
from protocol.nudges import Nudge, NudgeMode
from protocol.sessions import SessionSpec, StartSession
from tests.fixtures.daemon import is_event, is_status, send_nudge, summary_at, wait_for
from tests.fixtures.simulator import SimulatorHandle


def start(task: str, workdir: Path, model: str | None = None) -> StartSession:
    return StartSession(task=task, workdir=str(workdir), model=model)


async def nudge_during_tool(
    supervisor: Supervisor,
    store: Store,
    workdir: Path,
    task: str,
    text: str,
    *,
    mode: NudgeMode = "steer",
    model: str | None = None,
) -> tuple[SessionSpec, Nudge]:
    """Start a slow-tool session, nudge it while its tool runs, then let the tool end."""
    spec = await supervisor.create_session(start(task, workdir, model))
    await wait_for(store, spec.id, is_event("tool.call"))
    nudge = await send_nudge(store, spec.id, text, mode=mode)
    await wait_for(store, spec.id, is_event("nudge.received"))
    (workdir / "go").touch()
    return spec, nudge


def requests_of(simulator: SimulatorHandle, task: str) -> list[dict[str, object]]:
    """The request bodies the simulator received for the session with this task."""
    bodies = [r["body"] for r in simulator.requests()]
    return [b for b in bodies if b["messages"][0]["content"] == task]


async def test_a_session_runs_its_tools_and_goes_idle(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:short] look around", tmp_path))
    idle = await wait_for(store, spec.id, is_status("idle"))
    summary = await summary_at(supervisor, spec.id, idle)
    root = summary.agents[0]
    assert root.requests == 3
    assert root.usage.output_tokens > 0 and root.cost_usd > 0
    tools = [f.event for f in await store.read_events(spec.id) if f.event.type == "tool.result"]
    assert [t.name for t in tools] == ["list_files", "run_command"]  # type: ignore[union-attr]
    assert "checked" in tools[1].output  # type: ignore[union-attr]


async def test_twenty_requests_with_three_nudges_keep_the_cache(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:twenty] cache check {tmp_path.name}"
    spec = await supervisor.create_session(start(task, tmp_path))
    nudges = []
    for request_no in (4, 9, 14):
        await wait_for(store, spec.id, is_event("model.request", request_no=request_no))
        nudges.append(await send_nudge(store, spec.id, f"correction before {request_no}"))
    await wait_for(store, spec.id, is_status("idle"))

    events = [f.event for f in await store.read_events(spec.id)]
    delivered = [e for e in events if isinstance(e, NudgeDelivered)]
    assert sorted(d.nudge_id for d in delivered) == sorted(n.nudge_id for n in nudges)
    for d in delivered:
        assert d.path == "system_message"
        assert d.cache.prior_cached_share is not None and d.cache.prior_cached_share >= 0.99
    replies = [e for e in events if isinstance(e, ModelReplied)]
    assert len(replies) >= 20
    for reply in replies[1:]:
        assert reply.cache.prior_cached_share is not None and reply.cache.prior_cached_share >= 0.99

    bodies = requests_of(simulator, task)
    assert len(bodies) == len(replies)
    for before, after in itertools.pairwise(bodies):
        assert before["system"] == after["system"] and before["tools"] == after["tools"]
        old, new = before["messages"], after["messages"]
        assert json.dumps(new[: len(old)]) == json.dumps(old)  # type: ignore[index, arg-type]
    for body in bodies:
        assert placement_problems(body["messages"]) == []  # type: ignore[arg-type]
    system_texts = [m["content"] for m in bodies[-1]["messages"] if m["role"] == "system"]  # type: ignore[union-attr, index]
    assert len(system_texts) == 3


async def test_a_nudge_during_a_tool_lands_after_its_result(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:slow-tool] {tmp_path.name}"
    spec, nudge = await nudge_during_tool(supervisor, store, tmp_path, task, "no casts")
    delivered = await wait_for(store, spec.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
    assert delivered.event.request_no == 2  # type: ignore[union-attr]
    messages = requests_of(simulator, task)[1]["messages"]
    assert messages[-2]["content"][0]["type"] == "tool_result"  # type: ignore[index]
    assert messages[-1] == {"role": "system", "content": "Operator note from tester: no casts"}  # type: ignore[index]
    reply = await wait_for(store, spec.id, is_event("model.reply", request_no=2))
    assert "no casts" in reply.event.text  # type: ignore[union-attr]


async def test_a_nudge_wakes_an_idle_agent(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:short] idle {tmp_path.name}"
    spec = await supervisor.create_session(start(task, tmp_path))
    idle = await wait_for(store, spec.id, is_status("idle"))
    nudge = await send_nudge(store, spec.id, "also update the changelog")
    await wait_for(store, spec.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
    await wait_for(store, spec.id, is_status("idle"), since=idle.seq)
    last = requests_of(simulator, task)[-1]["messages"]
    assert last[-2] == {"role": "user", "content": IDLE_USER_TURN}  # type: ignore[index]
    assert last[-1]["role"] == "system"  # type: ignore[index]


async def test_queue_nudges_wait_for_the_end_of_the_turn(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:slow-tool] queue {tmp_path.name}"
    spec, nudge = await nudge_during_tool(
        supervisor, store, tmp_path, task, "then write the docs", mode="queue"
    )
    applied = await wait_for(store, spec.id, is_event("nudge.applied", nudge_id=nudge.nudge_id))
    assert applied.event.request_no == 3  # type: ignore[union-attr]  # not request 2, after the tool
    bodies = requests_of(simulator, task)
    assert all(m["role"] != "system" for m in bodies[1]["messages"])  # type: ignore[index]


async def test_models_without_system_messages_get_an_operator_note(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    task = f"[scenario:slow-tool] fallback {tmp_path.name}"
    spec, nudge = await nudge_during_tool(
        supervisor, store, tmp_path, task, "no casts", model="claude-sonnet-5"
    )
    delivered = await wait_for(store, spec.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
    assert delivered.event.path == "user_note"  # type: ignore[union-attr]
    last = requests_of(simulator, task)[1]["messages"][-1]
    assert last["content"][-1] == {"type": "text", "text": "[Operator note from tester] no casts"}  # type: ignore[index]


async def test_nudges_for_unknown_agents_are_reported_and_acknowledged(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(start("[scenario:short] reject", tmp_path))
    nudge = await send_nudge(store, spec.id, "hello", agent="nobody")
    rejected = await wait_for(store, spec.id, is_event("nudge.rejected", nudge_id=nudge.nudge_id))
    assert "nobody" in rejected.event.reason  # type: ignore[union-attr]
    pending = await store.redis.xpending(store.keys.nudges(spec.id), NUDGE_GROUP)
    assert pending["pending"] == 0


async def test_a_failed_model_call_is_visible_and_resumable(
    supervisor: Supervisor, store: Store, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    simulator.fault("overloaded", count=3, retry_after=0)  # more than the SDK's retries
    spec = await supervisor.create_session(start("[scenario:short] overloaded", tmp_path))
    failed = await wait_for(store, spec.id, is_status("failed"))
    assert "529" in ((await summary_at(supervisor, spec.id, failed)).agents[0].error or "")
    await supervisor.resume_agents(spec.id, None, author="tester")
    await wait_for(store, spec.id, is_status("idle"), since=failed.seq)


async def test_a_restarted_supervisor_resumes_and_applies_a_nudge_sent_while_it_was_down(
    store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    first = Supervisor(store, model_client, default_model="claude-opus-5-5")
    await first.start()
    spec = await first.create_session(start("[scenario:short] restart", tmp_path))
    idle = await wait_for(store, spec.id, is_status("idle"))
    await first.stop()

    nudge = await send_nudge(store, spec.id, "one more thing")
    # A crash between read and apply: the entry is delivered to the consumer, never acked.
    await store.redis.xreadgroup(NUDGE_GROUP, NUDGE_CONSUMER, {store.keys.nudges(spec.id): ">"})

    second = Supervisor(store, model_client, default_model="claude-opus-5-5")
    await second.start()
    await wait_for(store, spec.id, is_event("nudge.delivered", nudge_id=nudge.nudge_id))
    await wait_for(store, spec.id, is_status("idle"), since=idle.seq)
    # The sender retries the same nudge (say its XADD timed out): it must be a no-op,
    # acknowledged without a commit.
    commits = second.core(spec.id).state.commits
    retry_id = await store.send_nudge(nudge.to_fields())
    await until_consumed(store, spec.id, retry_id)
    assert second.core(spec.id).state.commits == commits
    await second.stop()

    events = [f.event for f in await store.read_events(spec.id)]
    applied = [e for e in events if e.type == "nudge.applied"]
    assert [e.nudge_id for e in applied] == [nudge.nudge_id]  # type: ignore[union-attr]
    agents = await store.load_agents(spec.id)
    assert [m["role"] for m in agents[0].messages].count("system") == 1


async def until_consumed(store: Store, sid: str, entry_id: str, within: float = 10.0) -> None:
    """Wait until the session's owner has read and acknowledged everything up to entry_id."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        groups = await store.redis.xinfo_groups(store.keys.nudges(sid))
        group = next(g for g in groups if g["name"] == NUDGE_GROUP)
        if group["last-delivered-id"] == entry_id and group["pending"] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nudge entry {entry_id} was not consumed in {within}s")


async def test_a_session_survives_a_redis_crash_mid_step(
    private_redis: RedisServer, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    redis = Redis.from_url(private_redis.url, decode_responses=True)
    store = Store(redis, Keys("crash"))
    sup = Supervisor(store, model_client, default_model="claude-opus-5-5")
    await sup.start()
    spec = await sup.create_session(start("[scenario:slow-tool] redis crash", tmp_path))
    await wait_for(store, spec.id, is_event("tool.call"))

    private_redis.kill()  # SIGKILL while the tool runs: its result must wait for Redis
    (tmp_path / "go").touch()
    for _ in range(1000):  # bounded wait for the tool to end while Redis is down
        if (tmp_path / "finished").exists():
            break
        await asyncio.sleep(0.01)
    private_redis.restart()  # same port and AOF: everything acknowledged before is back

    watcher = Store(Redis.from_url(private_redis.url, decode_responses=True), Keys("crash"))
    await wait_for(watcher, spec.id, is_status("idle"), within=30)
    agents = await watcher.load_agents(spec.id)
    await watcher.aclose()
    await watcher.redis.aclose()
    roles = [m["role"] for m in agents[0].messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert agents[0].state.status == "idle"
    await sup.stop()
    await store.aclose()
    await redis.aclose()
