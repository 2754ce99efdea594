"""The Redis store: steer's durable state behind domain verbs.

Callers get protocol and daemon models, never raw Redis replies. Each agent step is
one MULTI: the new messages, the agent state, the step's events and the XACK of the
nudge it recorded, so a crash either keeps all of it or none (and the nudge is then
redelivered; its recorded id makes the second application a no-op).

Event sequence numbers are per session and assigned here, under a per-session lock,
so frames enter the event stream in order with ids `<seq>-0`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from daemon.agent_state import AgentConfig, AgentState, Message
from daemon.keys import NUDGE_GROUP, Keys
from protocol.envelope import Frame
from protocol.events import Event, NudgeRejected
from protocol.nudges import Nudge
from protocol.sessions import SessionSpec

REJECTED_MAXLEN = 10_000


@dataclass(frozen=True, slots=True)
class StoredAgent:
    config: AgentConfig
    state: AgentState
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class NudgeEntry:
    entry_id: str
    fields: dict[str, str]


class Store:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        if not redis.get_connection_kwargs().get("decode_responses"):  # type: ignore[no-untyped-call]
            raise ValueError("the store needs a Redis client with decode_responses=True")
        # redis-py types replies as unions over decode modes; with decode_responses=True
        # they are str, which is what this module relies on.
        self.redis: Any = redis
        self.keys = keys
        self._seq: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- sessions ---------------------------------------------------------------

    async def create_session(self, spec: SessionSpec, root: AgentConfig) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.spec(spec.id), spec.model_dump_json())
            pipe.hset(self.keys.agents(spec.id), root.agent, root.model_dump_json())
            pipe.hset(self.keys.sessions, spec.id, spec.name)
            await pipe.execute()

    async def add_agent(
        self, config: AgentConfig, state: AgentState, events: Sequence[Event]
    ) -> list[Frame]:
        """Create an agent (a subagent) with its first state and events, atomically."""
        sid = config.session
        async with self._lock(sid):
            frames = await self._frames(sid, events)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.agents(sid), config.agent, config.model_dump_json())
                pipe.set(self.keys.state(sid, config.agent), state.model_dump_json())
                self._queue_frames(pipe, sid, frames)
                await self._execute(pipe, sid, frames)
        return frames

    async def session_names(self) -> dict[str, str]:
        """Every session id with its name."""
        names: dict[str, str] = await self.redis.hgetall(self.keys.sessions)
        return names

    async def load_spec(self, sid: str) -> SessionSpec | None:
        raw = await self.redis.get(self.keys.spec(sid))
        return SessionSpec.model_validate_json(raw) if raw else None

    async def load_agents(self, sid: str) -> list[StoredAgent]:
        configs: dict[str, str] = await self.redis.hgetall(self.keys.agents(sid))
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in configs:
                pipe.get(self.keys.state(sid, aid))
                pipe.lrange(self.keys.messages(sid, aid), 0, -1)
            replies = await pipe.execute()
        return [
            StoredAgent(
                config=AgentConfig.model_validate_json(raw_config),
                state=AgentState.model_validate_json(raw_state) if raw_state else AgentState(),
                messages=[json.loads(m) for m in raw_messages],
            )
            for raw_config, raw_state, raw_messages in zip(
                configs.values(), replies[::2], replies[1::2], strict=True
            )
        ]

    # -- agent steps ------------------------------------------------------------

    async def commit(
        self,
        config: AgentConfig,
        *,
        messages: Sequence[Message],
        state: AgentState,
        events: Sequence[Event],
        acks: Sequence[str] = (),
    ) -> list[Frame]:
        """Persist one step atomically; returns the events as numbered frames."""
        sid, aid = config.session, config.agent
        async with self._lock(sid):
            frames = await self._frames(sid, events)
            async with self.redis.pipeline(transaction=True) as pipe:
                if messages:
                    pipe.rpush(self.keys.messages(sid, aid), *(_dumps(m) for m in messages))
                pipe.set(self.keys.state(sid, aid), state.model_dump_json())
                self._queue_frames(pipe, sid, frames)
                if acks:
                    pipe.xack(self.keys.nudges, NUDGE_GROUP, *acks)
                await self._execute(pipe, sid, frames)
        return frames

    async def step_landed(self, config: AgentConfig, commits: int) -> bool:
        """Whether the commit numbered `commits` ran although its reply was lost.

        A MULTI runs whole or not at all, and every commit writes the agent state with
        its number, so the stored state tells.
        """
        raw = await self.redis.get(self.keys.state(config.session, config.agent))
        return raw is not None and AgentState.model_validate_json(raw).commits >= commits

    async def append_events(
        self, sid: str, events: Sequence[Event], acks: Sequence[str] = ()
    ) -> list[Frame]:
        """Record events that change no agent (and ack the nudges they concern)."""
        async with self._lock(sid):
            frames = await self._frames(sid, events)
            async with self.redis.pipeline(transaction=True) as pipe:
                self._queue_frames(pipe, sid, frames)
                if acks:
                    pipe.xack(self.keys.nudges, NUDGE_GROUP, *acks)
                await self._execute(pipe, sid, frames)
        return frames

    async def record_standing(self, nudge: Nudge, event: Event, ack: str) -> list[Frame]:
        """Keep a standing nudge for every present and future agent of its session, and
        ack its stream entry, atomically; agents then record it as usual."""
        sid = nudge.session
        async with self._lock(sid):
            frames = await self._frames(sid, [event])
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(self.keys.standing(sid), nudge.model_dump_json())
                self._queue_frames(pipe, sid, frames)
                pipe.xack(self.keys.nudges, NUDGE_GROUP, ack)
                await self._execute(pipe, sid, frames)
        return frames

    async def load_standing(self, sid: str) -> list[Nudge]:
        """The session's standing nudges, oldest first, each once."""
        raw: list[str] = await self.redis.lrange(self.keys.standing(sid), 0, -1)
        nudges = {n.nudge_id: n for n in map(Nudge.model_validate_json, raw)}
        return list(nudges.values())

    async def reject_unknown(self, nudge_id: str, session: str, reason: str, ack: str) -> None:
        """Report a nudge for a session that does not exist, and ack it."""
        frame = Frame(
            session=session,
            seq=0,
            ts=time.time(),
            event=NudgeRejected(agent="", nudge_id=nudge_id, reason=reason),
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.rejected,
                {"frame": frame.model_dump_json()},
                maxlen=REJECTED_MAXLEN,
                approximate=True,
            )
            pipe.xack(self.keys.nudges, NUDGE_GROUP, ack)
            await pipe.execute()

    # -- events -----------------------------------------------------------------

    async def read_events(
        self, sid: str, *, since: int = 0, block_ms: int | None = None, count: int = 1000
    ) -> list[Frame]:
        """Frames with seq > since; with block_ms, wait up to that long for the next ones."""
        key = self.keys.events(sid)
        if block_ms is None:
            entries = await self.redis.xrange(key, min=f"({since}-0", count=count)
        else:
            reply = await self.redis.xread({key: f"{since}-0"}, count=count, block=block_ms)
            entries = reply[0][1] if reply else []
        return [Frame.model_validate_json(fields["frame"]) for _, fields in entries]

    async def last_seq(self, sid: str) -> int:
        entries = await self.redis.xrevrange(self.keys.events(sid), count=1)
        return int(entries[0][0].split("-")[0]) if entries else 0

    async def load_seq(self, sid: str) -> int:
        """Read the session's last seq into the cache `known_seq` answers from."""
        async with self._lock(sid):
            if sid not in self._seq:
                self._seq[sid] = await self.last_seq(sid)
            return self._seq[sid]

    def known_seq(self, sid: str) -> int:
        """The last seq committed by this process (or loaded by `load_seq`)."""
        return self._seq.get(sid, 0)

    # -- nudges -----------------------------------------------------------------

    async def ensure_nudge_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.nudges, NUDGE_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_nudges(
        self, consumer: str, *, pending: bool, block_ms: int, count: int = 100
    ) -> list[NudgeEntry]:
        """Read this consumer's unacknowledged entries (pending=True), or new ones."""
        reply = await self.redis.xreadgroup(
            NUDGE_GROUP,
            consumer,
            {self.keys.nudges: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        entries = reply[0][1] if reply else []
        return [NudgeEntry(entry_id, fields) for entry_id, fields in entries]

    async def send_nudge(self, fields: dict[str, str]) -> str:
        entry_id: str = await self.redis.xadd(self.keys.nudges, fields)
        return entry_id

    # -- internals --------------------------------------------------------------

    def _lock(self, sid: str) -> asyncio.Lock:
        return self._locks.setdefault(sid, asyncio.Lock())

    async def _execute(self, pipe: Any, sid: str, frames: Sequence[Frame]) -> None:
        """Run a MULTI that writes `frames`, keeping the seq cache true either way."""
        try:
            await pipe.execute()
        except BaseException:
            # The EXEC may or may not have run: re-read the sequence next time.
            self._seq.pop(sid, None)
            raise
        if frames:
            self._seq[sid] = frames[-1].seq

    async def _frames(self, sid: str, events: Sequence[Event]) -> list[Frame]:
        if sid not in self._seq:
            self._seq[sid] = await self.last_seq(sid)
        now = time.time()
        first = self._seq[sid] + 1
        return [
            Frame(session=sid, seq=first + i, ts=now, event=event) for i, event in enumerate(events)
        ]

    def _queue_frames(self, pipe: Any, sid: str, frames: Sequence[Frame]) -> None:
        key = self.keys.events(sid)
        for frame in frames:
            pipe.xadd(key, {"frame": frame.model_dump_json()}, id=f"{frame.seq}-0")


def _dumps(message: JsonValue) -> str:
    # Compact and key-order-preserving: what is stored is what is re-sent.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
