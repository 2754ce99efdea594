"""A session's life past its work, in the daemon: the refusals of `rm` and `archive`,
removal that no daemon undoes, and imported sessions that stay read-only."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from daemon.catalog import DEFAULT_MODEL
from daemon.commands import execute
from daemon.errors import CommandError
from daemon.keys import Keys
from daemon.model_client import AnthropicModelClient
from daemon.store import Store
from daemon.supervisor import Supervisor
from daemon.transfer import export_lines, import_session, parse_export
from protocol.commands import Archive, Pause, Remove, SendNudgeCommand
from protocol.nudges import SendNudge
from protocol.sessions import StartSession
from tests.fixtures.daemon import is_event, is_status, wait_for


def cmd_id() -> str:
    return f"t-{secrets.token_hex(4)}"


async def session_keys(store: Store, sid: str) -> list[str]:
    return [k async for k in store.redis.scan_iter(match=store.keys.session_pattern(sid))]


@pytest.fixture
async def elsewhere(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    """Another daemon's Redis: here, the same server under another key prefix."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    store = Store(redis, Keys(f"{key_prefix}-elsewhere"))
    yield store
    await store.aclose()
    await redis.aclose()


async def test_rm_of_a_running_session_is_refused_without_force_and_no_daemon_brings_it_back(
    supervisor: Supervisor, store: Store, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(
        StartSession(task="[scenario:slow-tool] rm me", workdir=str(tmp_path), name="rm-me")
    )
    await wait_for(store, spec.id, is_event("tool.call"))
    with pytest.raises(CommandError) as refused:
        await execute(supervisor, Remove(id=cmd_id(), session="rm-me"))
    assert refused.value.code == "conflict"
    assert "root is running" in refused.value.message and "--force" in refused.value.message
    assert supervisor.owns(spec.id) and await session_keys(store, spec.id)

    removed = await execute(supervisor, Remove(id=cmd_id(), session="rm-me", force=True))
    assert removed == {"id": spec.id, "name": "rm-me", "keys": removed["keys"]}  # type: ignore[index, call-overload]
    assert not supervisor.owns(spec.id)
    assert await session_keys(store, spec.id) == []
    assert await store.redis.hget(store.keys.names, "rm-me") is None
    assert spec.id not in await store.session_names()
    # A daemon that listed the session before it went cannot claim it back.
    assert not await store.claim(spec.id, "d-late", 60_000, mode="mine")
    assert not await store.claim(spec.id, "d-late", 60_000, mode="orphan")
    assert await session_keys(store, spec.id) == []


async def test_an_archived_session_is_refused_verbs_and_no_daemon_drives_it(
    supervisor: Supervisor, store: Store, model_client: AnthropicModelClient, tmp_path: Path
) -> None:
    spec = await supervisor.create_session(
        StartSession(task="[scenario:slow-tool] archive me", workdir=str(tmp_path))
    )
    await wait_for(store, spec.id, is_event("tool.call"))
    with pytest.raises(CommandError, match=r"running .*--force"):
        await execute(supervisor, Archive(id=cmd_id(), session=spec.id))
    await execute(supervisor, Archive(id=cmd_id(), session=spec.id, force=True, author="ann"))
    ended = await wait_for(store, spec.id, is_status("done"))
    assert ended.event.reason == "ended by ann"  # type: ignore[union-attr]
    await wait_for(store, spec.id, is_event("tool.result"))  # interrupted, and stored
    assert not supervisor.owns(spec.id)
    assert (await supervisor.directory.summary(spec.id)).archived
    assert spec.id not in [s.spec.id for s in await supervisor.directory.summaries()]
    listed = await supervisor.directory.summaries(archived=True, memory=True)
    (mine,) = [s for s in listed if s.spec.id == spec.id]
    assert mine.archived and mine.memory_bytes is not None and mine.memory_bytes > 0

    with pytest.raises(CommandError, match="is archived"):
        await execute(supervisor, Pause(id=cmd_id(), session=spec.id))
    with pytest.raises(CommandError, match="is archived"):
        await supervisor.send_nudge(spec.id, SendNudge(text="hello?"))
    # Another daemon starting now leaves it alone.
    other = Supervisor(store, model_client, default_model=DEFAULT_MODEL)
    await other.start()
    try:
        assert not other.owns(spec.id)
        assert await store.redis.get(store.keys.lease(spec.id)) is None
    finally:
        await other.stop()
    await execute(supervisor, Archive(id=cmd_id(), session=spec.id, undo=True))
    assert not (await supervisor.directory.summary(spec.id)).archived


async def test_an_imported_session_is_read_only_and_exports_the_same(
    supervisor: Supervisor,
    store: Store,
    elsewhere: Store,
    model_client: AnthropicModelClient,
    tmp_path: Path,
) -> None:
    spec = await supervisor.create_session(
        StartSession(task="[scenario:short] move me", workdir=str(tmp_path), name="move-me")
    )
    await wait_for(store, spec.id, is_status("idle"))
    lines = [line async for line in export_lines(store, spec.id)]
    await import_session(elsewhere, parse_export(lines))
    with pytest.raises(CommandError, match="exists here"):
        await import_session(elsewhere, parse_export(lines))

    there = Supervisor(elsewhere, model_client, default_model=DEFAULT_MODEL)
    await there.start()
    try:
        assert not there.owns(spec.id)
        summary = await there.directory.summary(await there.directory.resolve("move-me"))
        assert summary.imported and summary.archived and summary.status == "idle"
        for verb in (
            Pause(id=cmd_id(), session="move-me"),
            SendNudgeCommand(id=cmd_id(), session="move-me", text="hello?"),
            Archive(id=cmd_id(), session="move-me", undo=True),
        ):
            with pytest.raises(CommandError, match="imported sessions are read-only") as exc:
                await execute(there, verb)
            assert exc.value.code == "conflict"
        again = [line async for line in export_lines(elsewhere, spec.id)]
        assert again[1:] == lines[1:]  # the header's exported_at alone differs
        removed = await execute(there, Remove(id=cmd_id(), session="move-me"))
        assert removed["keys"] > 0  # type: ignore[index, call-overload, operator]
        assert await session_keys(elsewhere, spec.id) == []
    finally:
        await there.stop()


def test_an_export_with_a_bad_line_is_refused_with_its_number() -> None:
    header = b'{"kind":"header","format":1,"session":"s-1","exported_at":1.0}'
    with pytest.raises(CommandError, match="line 1: not a steer export"):
        parse_export([b'{"kind":"spec"}'])
    with pytest.raises(CommandError, match="line 2: SessionSpec: name: Field required"):
        parse_export([header, b'{"kind":"spec","spec":{"id":"s-1"}}'])
    with pytest.raises(CommandError, match="format 2"):
        parse_export([header.replace(b'"format":1', b'"format":2')])
