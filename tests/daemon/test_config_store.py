"""Agent configs share their tools and system prompt: one object per content in the
daemon, one blob per content in Redis (`daemon.interned`, `daemon.config_store`)."""

from __future__ import annotations

import asyncio
import json
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from daemon.agent_state import ROOT, AgentConfig
from daemon.interned import digest, encode
from daemon.prompts import system_prompt
from daemon.store import CorruptRecord, Store
from daemon.tools import TOOL_SPECS
from protocol.events import SessionCreated
from protocol.sessions import SessionSpec

REPO = Path(__file__).resolve().parents[2]


def root_config(sid: str, workdir: str) -> AgentConfig:
    return AgentConfig(
        session=sid,
        task="t",
        workdir=workdir,
        model="claude-opus-5-5",
        system=system_prompt(workdir),
        tools=[*TOOL_SPECS],
    )


async def new_session(store: Store, sid: str, workdir: str) -> AgentConfig:
    root = root_config(sid, workdir)
    spec = SessionSpec(
        id=sid, name=sid, task="t", workdir=workdir, model="claude-opus-5-5", created_at=1.0
    )
    frames = await store.create_session(
        spec, root, [SessionCreated(agent=ROOT, spec=spec)], daemon_id="d-one", ttl_ms=60_000
    )
    assert frames is not None
    return root


def test_configs_with_the_same_content_hold_one_object_and_are_validated_once() -> None:
    first, second = root_config("s-1", "/w"), root_config("s-2", "/w")
    assert first.tools is second.tools and first.system is second.system
    assert first.tools == TOOL_SPECS and first.tools is not TOOL_SPECS
    again = AgentConfig.model_validate_json(first.model_dump_json())
    assert again == first and again.tools is first.tools and again.system is first.system
    assert root_config("s-3", "/elsewhere").system is not first.system
    with pytest.raises(ValueError, match="valid JSON value"):
        AgentConfig.model_validate({**first.model_dump(), "tools": [{"x": {1, 2}}]})


async def test_sessions_store_their_tools_and_prompt_once_as_blobs(store: Store) -> None:
    one = await new_session(store, "s-one", "/work/a")
    two = await new_session(store, "s-two", "/work/a")
    other = await new_session(store, "s-other", "/work/b")
    k, redis = store.keys, store.redis
    records = [json.loads(await redis.hget(k.agents(s), ROOT)) for s in ("s-one", "s-other")]
    assert "tools" not in records[0] and "system" not in records[0]
    assert records[0]["tools_blob"] == records[1]["tools_blob"] == digest(encode(one.tools))
    assert records[0]["system_blob"] == digest(encode(one.system))
    assert records[1]["system_blob"] == digest(encode(other.system))
    blobs = sorted([key async for key in redis.scan_iter(match=k.blob("*"))])
    assert blobs == sorted({k.blob(r[f]) for r in records for f in ("tools_blob", "system_blob")})
    assert await redis.get(k.blob(records[0]["tools_blob"])) == encode(TOOL_SPECS)
    [loaded] = await store.load_agents("s-two")
    assert loaded.config == two and loaded.config.tools is one.tools


async def test_another_process_reads_the_blobs_and_shares_them_among_its_agents(
    store: Store, redis_url: str, key_prefix: str
) -> None:
    await new_session(store, "s-one", "/work/a")
    await new_session(store, "s-two", "/work/a")
    script = """
import asyncio, json, sys
from redis.asyncio import Redis
from daemon.keys import Keys
from daemon.store import Store

async def main() -> None:
    redis = Redis.from_url(sys.argv[1], decode_responses=True)
    store = Store(redis, Keys(sys.argv[2]))
    [(one, _)] = await store.load_agent_states("s-one")
    [(two, _)] = await store.load_agent_states("s-two")
    shared = one.tools is two.tools and one.system is two.system
    print(json.dumps({"shared": shared, "config": one.model_dump(mode="json")}))
    await redis.aclose()

asyncio.run(main())
"""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, redis_url, key_prefix, cwd=REPO, stdout=PIPE, stderr=PIPE
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    found = json.loads(out)
    assert found["shared"] is True
    assert AgentConfig.model_validate(found["config"]) == root_config("s-one", "/work/a")


async def test_a_config_stored_inline_before_blobs_still_loads(store: Store) -> None:
    root = await new_session(store, "s-old", "/work/a")
    # The format of a config written by a daemon from before blobs.
    await store.redis.hset(store.keys.agents("s-old"), ROOT, root.model_dump_json())
    [(config, _)] = await store.load_agent_states("s-old")
    assert config == root and config.tools is root.tools


async def test_a_config_naming_a_missing_blob_is_refused_naming_the_blob(store: Store) -> None:
    await new_session(store, "s-lost", "/work/a")
    key = store.keys.agents("s-lost")
    record = json.loads(await store.redis.hget(key, ROOT))
    record["system_blob"] = digest("never stored")
    await store.redis.hset(key, ROOT, json.dumps(record))
    with pytest.raises(CorruptRecord, match=store.keys.blob(digest("never stored"))):
        await store.load_agents("s-lost")
