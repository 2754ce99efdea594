"""The Redis store: steer's durable state behind domain verbs.

Callers get protocol and daemon models, never raw Redis replies. Every write of a
session is one fenced script (`daemon.fenced`): it lands whole, or not at all, and
only while this daemon holds the session's lease. An agent step writes its new
messages, its small state, the nudges it recorded (pending hash, seen set), its
events and the XACK of the stream entries it consumed together, so a crash keeps all
of it or none (the entry is then redelivered; its recorded id makes the second
delivery a no-op).

Event sequence numbers are per session and assigned here, under a per-session lock,
so frames enter the event stream in order with ids `<seq>-0`; the script checks the
stream is still where the numbering started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue, ValidationError

from daemon.agent_state import AgentConfig, AgentState, Message, NudgeChanges
from daemon.config_store import ConfigStore, config_record
from daemon.errors import CommandError
from daemon.fenced import CLAIM, READ_NUDGES, RELEASE, RENEW, Batch, NotOwner
from daemon.guards import ProtectedFile
from daemon.keys import NUDGE_GROUP, Keys
from daemon.redis_clients import subscriber, undecoded
from protocol.envelope import Frame
from protocol.events import Event
from protocol.nudges import Nudge
from protocol.sessions import Budget, SessionSpec

NO_CHANGES = NudgeChanges()


class CorruptRecord(Exception):
    """A stored value that cannot be read back; the message names the key."""


class NameTaken(CommandError):
    def __init__(self, name: str, holder: str) -> None:
        super().__init__("conflict", f"the name {name!r} is taken by session {holder}")


@dataclass(frozen=True, slots=True)
class StoredAgent:
    config: AgentConfig
    state: AgentState
    #: Its conversation; empty unless `loaded` (`load_sessions` reads only those asked).
    messages: list[Message]
    #: Nudges recorded for the agent and not yet delivered, oldest first.
    pending: list[Nudge]
    #: Ids of every nudge recorded for the agent.
    seen: set[str]
    loaded: bool = True


@dataclass(frozen=True, slots=True)
class StoredSession:
    """What a daemon reads of a session it has just claimed (`Store.load_sessions`)."""

    spec: SessionSpec
    standing: list[Nudge]
    protected: dict[str, ProtectedFile]
    budget: Budget | None
    agents: list[StoredAgent]
    #: The id of the last entry of its control stream (`daemon.relay`), if any.
    control_top: str | None


#: Whether to read an agent's conversation now, from its state, its pending nudges and
#: how many messages it has.
WantsConversation = Callable[[AgentState, Sequence[Nudge], int], bool]


@dataclass(frozen=True, slots=True)
class NudgeEntry:
    """One nudge stream entry, as raw as it was written: decoding it is the reader's job."""

    entry_id: str
    #: None when the entry was trimmed away while still pending.
    fields: dict[bytes, bytes] | None


class Store:
    def __init__(self, redis: Any, keys: Keys, *, raw: Any = None) -> None:
        """`redis` decodes replies (decode_responses=True); `raw` does not and reads the
        nudge streams, whose bytes are untrusted (default: made from `redis`)."""
        if not redis.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the store needs a Redis client with decode_responses=True")
        # redis-py types replies as unions over decode modes; this module knows which.
        self.redis: Any = redis
        self._raw: Any = raw
        self.keys = keys
        #: The lease token of every session this daemon owns.
        self.tokens: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Agent configs in Redis, with the blobs (tools, system prompt) they share.
        self.configs = ConfigStore(redis, keys)

    @property
    def raw(self) -> Any:
        if self._raw is None:
            self._raw = undecoded(self.redis)
        return self._raw

    def subscriber(self) -> Any:
        """A redis-py `PubSub` for the doorbell, relay and committed channels (on a
        cluster, to one node: they are broadcast to all); the caller closes it."""
        return subscriber(self.redis)

    async def aclose(self) -> None:
        """Close the undecoded client this store made (the caller owns `redis`)."""
        if self._raw is not None:
            await self._raw.aclose()
            self._raw = None

    # -- ownership ----------------------------------------------------------------

    async def claim(self, sid: str, daemon_id: str, ttl_ms: int, *, mode: str) -> bool:
        """Take the session's lease with a new epoch (see `fenced._CLAIM` for modes)."""
        return bool(await self.claim_many([sid], daemon_id, ttl_ms, mode=mode))

    async def claim_many(
        self, sids: Sequence[str], daemon_id: str, ttl_ms: int, *, mode: str
    ) -> list[str]:
        """`claim` for many sessions in one round trip; returns those now owned here."""
        if not sids:
            return []
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                keys = [k.lease(sid), k.epoch(sid), k.nudges(sid), k.spec(sid), k.archived(sid)]
                CLAIM.queue(pipe, keys, [daemon_id, ttl_ms, mode])
            tokens = await pipe.execute()
        claimed = []
        for sid, token in zip(sids, tokens, strict=True):
            if token is not None:
                self.tokens[sid] = token
                self._seq.pop(sid, None)
                claimed.append(sid)
        return claimed

    async def renew(self, sids: Sequence[str], ttl_ms: int) -> list[str]:
        """Renew the leases of `sids` in one round trip; returns those that were lost."""
        if not sids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                RENEW.queue(pipe, [self.keys.lease(sid)], [self.tokens[sid], ttl_ms])
            replies = await pipe.execute()
        return [sid for sid, ok in zip(sids, replies, strict=True) if not ok]

    async def release(self, sid: str) -> None:
        token = self.forget(sid)
        if token is not None:
            await RELEASE(self.redis, [self.keys.lease(sid)], [token])

    def forget(self, sid: str) -> str | None:
        """Drop what this process knows of a session it no longer owns."""
        self._seq.pop(sid, None)
        self._locks.pop(sid, None)
        return self.tokens.pop(sid, None)

    async def lease_holders(self, sids: Sequence[str]) -> dict[str, str | None]:
        """Each session's lease token, or None where no live lease exists."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.get(self.keys.lease(sid))
            replies = await pipe.execute()
        return dict(zip(sids, replies, strict=True))

    async def register_daemon(self, daemon_id: str, info: dict[str, JsonValue]) -> None:
        await self.redis.hset(self.keys.daemons, daemon_id, json.dumps(info))

    async def deregister_daemon(self, daemon_id: str) -> None:
        await self.redis.hdel(self.keys.daemons, daemon_id)

    async def live_daemons(self) -> dict[str, dict[str, Any]]:
        """Registered daemons whose registration has not expired (stale ones are dropped)."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.daemons)
        now, live, stale = time.time(), {}, []
        for did, text in raw.items():
            try:
                info = json.loads(text)
                alive = float(info["expires_at"]) > now
            except (ValueError, KeyError, TypeError):
                alive = False
            if alive:
                live[did] = info
            else:
                stale.append(did)
        if stale:
            await self.redis.hdel(self.keys.daemons, *stale)
        return live

    # -- sessions -----------------------------------------------------------------

    async def create_session(
        self,
        spec: SessionSpec,
        root: AgentConfig,
        events: Sequence[Event],
        *,
        daemon_id: str,
        ttl_ms: int,
        protected: Mapping[str, ProtectedFile] | None = None,
        budget: Budget | None = None,
    ) -> list[Frame] | None:
        """Create a session owned by this daemon; None if its id was ever used.

        `protected` is the copy of its protected files, written with the spec, once;
        `budget` its budget, if it has one.

        Raises NameTaken if another session has its name (`reserve_name`)."""
        sid = spec.id
        await self.reserve_name(spec.name, sid)
        if not await self.claim(sid, daemon_id, ttl_ms, mode="new"):
            await self.redis.hdel(self.keys.names, spec.name)
            return None
        await self.configs.save_blobs([root])
        async with self._lock(sid):
            batch = self._batch(sid)
            batch.set(self.keys.spec(sid), spec.model_dump_json())
            batch.hset(self.keys.agents(sid), {root.agent: config_record(root)})
            batch.hset(
                self.keys.protected(sid),
                {path: kept.model_dump_json() for path, kept in (protected or {}).items()},
            )
            if budget is not None:
                batch.set(self.keys.budget(sid), budget.model_dump_json())
            frames = await self._write(sid, batch, events)
        await self.redis.hset(self.keys.sessions, sid, spec.name)
        return frames

    async def add_agent(
        self, config: AgentConfig, state: AgentState, events: Sequence[Event]
    ) -> list[Frame]:
        """Create an agent (a subagent) with its first state and events, atomically."""
        sid = config.session
        await self.configs.save_blobs([config])
        async with self._lock(sid):
            batch = self._batch(sid)
            batch.hset(self.keys.agents(sid), {config.agent: config_record(config)})
            batch.set(self.keys.state(sid, config.agent), state.model_dump_json())
            return await self._write(sid, batch, events)

    async def reserve_name(self, name: str, sid: str) -> None:
        """Take `name` for the session `sid`, or raise NameTaken: names are reserved with
        HSETNX, so of two daemons creating the same name at once only one gets it."""
        while not await self.redis.hsetnx(self.keys.names, name, sid):
            holder = await self.redis.hget(self.keys.names, name)
            if holder == sid:
                return
            if holder is not None:  # else removed meanwhile: try again
                raise NameTaken(name, holder)

    async def reserve_default_name(self, stem: str, sid: str) -> str:
        """The first free name of `stem`, `stem-2`, `stem-3`… taken for the session `sid`:
        the stem's count says where to look, so a start costs a command or two, never a
        read of every name."""
        while True:
            n = await self.redis.hincrby(self.keys.name_counts, stem, 1)
            name = stem if n == 1 else f"{stem}-{n}"
            if await self.redis.hsetnx(self.keys.names, name, sid):
                return name

    async def index_names(self, names: Mapping[str, str]) -> None:
        """Reserve the names of sessions (id -> name) created before names were reserved,
        in one round trip; a name already reserved is left as it is."""
        if names:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid, name in names.items():
                    pipe.hsetnx(self.keys.names, name, sid)
                await pipe.execute()

    async def named(self, ref: str) -> str | None:
        """The id of the session whose id or name is exactly `ref`, if there is one."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hexists(self.keys.sessions, ref)
            pipe.hget(self.keys.names, ref)
            is_id, holder = await pipe.execute()
        if is_id:
            return ref
        # A name is reserved before its session is listed (and kept if that failed).
        listed = holder is not None and await self.redis.hexists(self.keys.sessions, holder)
        return holder if listed else None

    async def session_names(self) -> dict[str, str]:
        """Every session id with its name."""
        names: dict[str, str] = await self.redis.hgetall(self.keys.sessions)
        return names

    async def load_spec(self, sid: str) -> SessionSpec | None:
        key = self.keys.spec(sid)
        raw = await self.redis.get(key)
        return _parse(key, raw, SessionSpec.model_validate_json) if raw else None

    async def load_budget(self, sid: str) -> Budget | None:
        key = self.keys.budget(sid)
        raw = await self.redis.get(key)
        return _parse(key, raw, Budget.model_validate_json) if raw else None

    async def set_budget(self, sid: str, budget: Budget, events: Sequence[Event]) -> list[Frame]:
        """Replace the session's budget, with the events that record it, atomically."""
        async with self._lock(sid):
            batch = self._batch(sid)
            batch.set(self.keys.budget(sid), budget.model_dump_json())
            return await self._write(sid, batch, events)

    async def load_protected(self, sid: str) -> dict[str, ProtectedFile]:
        """The session's copy of its protected files, by path."""
        key = self.keys.protected(sid)
        raw: dict[str, str] = await self.redis.hgetall(key)
        return {p: _parse(key, v, ProtectedFile.model_validate_json) for p, v in raw.items()}

    async def load_agents(self, sid: str) -> list[StoredAgent]:
        k = self.keys
        configs: dict[str, str] = await self.redis.hgetall(k.agents(sid))
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in configs:
                pipe.get(k.state(sid, aid))
                pipe.lrange(k.messages(sid, aid), 0, -1)
                pipe.hgetall(k.pending(sid, aid))
                pipe.smembers(k.seen(sid, aid))
            replies = await pipe.execute()
        parsed = await self._configs(sid, configs)
        agents = []
        for n, aid in enumerate(configs):
            raw_state, raw_messages, raw_pending, seen = replies[4 * n : 4 * n + 4]
            agents.append(
                StoredAgent(
                    config=parsed[aid],
                    state=(
                        _parse(k.state(sid, aid), raw_state, AgentState.model_validate_json)
                        if raw_state
                        else AgentState()
                    ),
                    messages=[_parse(k.messages(sid, aid), m, json.loads) for m in raw_messages],
                    pending=sorted(
                        (
                            _parse(k.pending(sid, aid), p, Nudge.model_validate_json)
                            for p in raw_pending.values()
                        ),
                        key=lambda nudge: nudge.sent_at,
                    ),
                    seen=set(seen),
                )
            )
        return agents

    async def load_agent_states(self, sid: str) -> list[tuple[AgentConfig, AgentState]]:
        """Each agent's config and small state, without its conversation."""
        k = self.keys
        configs: dict[str, str] = await self.redis.hgetall(k.agents(sid))
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in configs:
                pipe.get(k.state(sid, aid))
            states = await pipe.execute()
        parsed = await self._configs(sid, configs)
        return [
            (
                parsed[aid],
                _parse(k.state(sid, aid), raw, AgentState.model_validate_json)
                if raw
                else AgentState(),
            )
            for aid, raw in zip(configs, states, strict=True)
        ]

    async def load_sessions(
        self, sids: Sequence[str], *, conversation: WantsConversation
    ) -> dict[str, StoredSession | Exception | None]:
        """Read sessions just claimed, all in three pipelined round trips (their keys, their
        agents, the conversations `conversation` asks for), and cache each one's last seq.

        Each session's answer: what it holds; None if it was listed but never written; or
        why it cannot be loaded (`CorruptRecord` naming the key, or the client's
        UnicodeDecodeError for bytes that are not UTF-8). Redis errors are raised."""
        try:
            return await self._load_sessions(sids, conversation)
        except UnicodeDecodeError as exc:
            # The client refuses such a reply and fails the whole pipeline (dropping its
            # connection): one session at a time, to find whose it is.
            if len(sids) == 1:
                return {sids[0]: exc}
            found: dict[str, StoredSession | Exception | None] = {}
            for sid in sids:
                found |= await self.load_sessions([sid], conversation=conversation)
            return found

    async def _load_sessions(
        self, sids: Sequence[str], conversation: WantsConversation
    ) -> dict[str, StoredSession | Exception | None]:
        k = self.keys
        found: dict[str, StoredSession | Exception | None] = {}
        heads, failed = await self._read(
            [
                (sid, command, key, args)
                for sid in sids
                for command, key, args in (
                    ("get", k.spec(sid), ()),
                    ("lrange", k.standing(sid), (0, -1)),
                    ("hgetall", k.protected(sid), ()),
                    ("get", k.budget(sid), ()),
                    ("xrevrange", k.events(sid), ("+", "-", 1)),
                    ("xrevrange", k.control(sid), ("+", "-", 1)),
                    ("hgetall", k.agents(sid), ()),
                )
            ]
        )
        head = {sid: heads[7 * n : 7 * n + 7] for n, sid in enumerate(sids)}
        for sid in sids:
            if sid not in failed and head[sid][0] is None:
                found[sid] = None  # listed but never written
        live = [sid for sid in sids if sid not in failed and sid not in found]
        agent_ids = [(sid, aid) for sid in live for aid in head[sid][6]]
        rows, failed_too = await self._read(
            [
                (sid, command, key, args)
                for sid, aid in agent_ids
                for command, key, args in (
                    ("get", k.state(sid, aid), ()),
                    ("hgetall", k.pending(sid, aid), ()),
                    ("smembers", k.seen(sid, aid), ()),
                    ("llen", k.messages(sid, aid), ()),
                )
            ]
        )
        failed |= failed_too
        parts: dict[tuple[str, str], tuple[AgentState, list[Nudge], set[str]]] = {}
        wanted: list[tuple[str, str]] = []
        for n, (sid, aid) in enumerate(agent_ids):
            if sid in failed:
                continue
            raw_state, raw_pending, seen, count = rows[4 * n : 4 * n + 4]
            try:
                state = (
                    _parse(k.state(sid, aid), raw_state, AgentState.model_validate_json)
                    if raw_state
                    else AgentState()
                )
                pending = sorted(
                    (
                        _parse(k.pending(sid, aid), p, Nudge.model_validate_json)
                        for p in raw_pending.values()
                    ),
                    key=lambda nudge: nudge.sent_at,
                )
            except CorruptRecord as exc:
                failed[sid] = exc
                continue
            parts[sid, aid] = (state, pending, set(seen))
            if count and conversation(state, pending, count):
                wanted.append((sid, aid))
        texts, failed_too = await self._read(
            [(sid, "lrange", k.messages(sid, aid), (0, -1)) for sid, aid in wanted]
        )
        failed |= failed_too
        conversations = dict(zip(wanted, texts, strict=True))
        for sid in live:
            if sid in failed:
                found[sid] = failed[sid]
                continue
            try:
                found[sid] = await self._stored_session(sid, head[sid], parts, conversations)
            except CorruptRecord as exc:
                found[sid] = exc
        for sid, problem in failed.items():
            found[sid] = problem
        return found

    async def _stored_session(
        self,
        sid: str,
        head: list[Any],
        parts: Mapping[tuple[str, str], tuple[AgentState, list[Nudge], set[str]]],
        conversations: Mapping[tuple[str, str], list[str]],
    ) -> StoredSession:
        raw_spec, raw_standing, raw_protected, raw_budget, events, control, raw_agents = head
        k = self.keys
        standing = (_parse(k.standing(sid), r, Nudge.model_validate_json) for r in raw_standing)
        configs = await self._configs(sid, raw_agents)
        agents = []
        for aid, config in configs.items():
            state, pending, seen = parts[sid, aid]
            texts = conversations.get((sid, aid))
            messages = [_parse(k.messages(sid, aid), m, json.loads) for m in texts or ()]
            agents.append(StoredAgent(config, state, messages, pending, seen, texts is not None))
        self._seq.setdefault(sid, int(events[0][0].split("-")[0]) if events else 0)
        return StoredSession(
            spec=_parse(k.spec(sid), raw_spec, SessionSpec.model_validate_json),
            standing=list({n.nudge_id: n for n in standing}.values()),
            protected={
                p: _parse(k.protected(sid), v, ProtectedFile.model_validate_json)
                for p, v in raw_protected.items()
            },
            budget=_parse(k.budget(sid), raw_budget, Budget.model_validate_json)
            if raw_budget
            else None,
            agents=agents,
            control_top=control[0][0] if control else None,
        )

    async def _read(
        self, reads: Sequence[tuple[str, str, str, tuple[Any, ...]]]
    ) -> tuple[list[Any], dict[str, Exception]]:
        """Run reads `(sid, command, key, args)` in one pipeline: their replies, and for
        each session whose read Redis refused (a key of another type), the first such."""
        if not reads:
            return [], {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, command, key, args in reads:
                getattr(pipe, command)(key, *args)
            replies = await pipe.execute(raise_on_error=False)
        failed: dict[str, Exception] = {}
        for (sid, _, key, _), reply in zip(reads, replies, strict=True):
            if isinstance(reply, Exception) and sid not in failed:
                failed[sid] = CorruptRecord(f"{key}: {reply}")
        return replies, failed

    async def _configs(self, sid: str, raw: Mapping[str, str]) -> dict[str, AgentConfig]:
        """The agents hash's records read back (`daemon.config_store`), by agent id."""
        try:
            return await self.configs.load(raw)
        except (ValueError, ValidationError) as exc:
            problem = f"{self.keys.agents(sid)} holds a value steer cannot read"
            raise CorruptRecord(f"{problem}: {_first_line(exc)}") from exc

    async def has_agent(self, sid: str, aid: str) -> bool:
        return bool(await self.redis.hexists(self.keys.agents(sid), aid))

    async def load_messages(self, sid: str, aid: str) -> list[Message]:
        key = self.keys.messages(sid, aid)
        return [_parse(key, m, json.loads) for m in await self.redis.lrange(key, 0, -1)]

    # -- agent steps ------------------------------------------------------------

    async def commit(
        self,
        config: AgentConfig,
        *,
        messages: Sequence[Message],
        stored_messages: int,
        state: AgentState,
        events: Sequence[Event],
        nudges: NudgeChanges = NO_CHANGES,
        acks: Sequence[str] = (),
    ) -> list[Frame]:
        """Persist one step atomically; returns the events as numbered frames.

        `stored_messages` is how many messages the conversation held before the step:
        the write is refused (`Conflict`) if Redis disagrees, so nothing is appended
        twice.
        """
        sid, aid, k = config.session, config.agent, self.keys
        async with self._lock(sid):
            batch = self._batch(sid)
            batch.expect_len(k.messages(sid, aid), stored_messages)
            batch.rpush(k.messages(sid, aid), [_dumps(m) for m in messages])
            batch.set(k.state(sid, aid), state.model_dump_json())
            batch.sadd(k.seen(sid, aid), nudges.seen)
            batch.hset(
                k.pending(sid, aid), {n.nudge_id: n.model_dump_json() for n in nudges.pending_added}
            )
            batch.hdel(k.pending(sid, aid), nudges.pending_removed)
            batch.xack(k.nudges(sid), NUDGE_GROUP, acks)
            return await self._write(sid, batch, events)

    async def step_landed(self, config: AgentConfig, commits: int) -> bool:
        """Whether the commit numbered `commits` ran although its reply was lost.

        A write lands whole or not at all, and every commit writes the agent state with
        its number, so the stored state tells.
        """
        raw = await self.redis.get(self.keys.state(config.session, config.agent))
        return raw is not None and AgentState.model_validate_json(raw).commits >= commits

    async def append_events(
        self, sid: str, events: Sequence[Event], acks: Sequence[str] = ()
    ) -> list[Frame]:
        """Record events that change no agent (and ack the nudge entries they concern)."""
        async with self._lock(sid):
            batch = self._batch(sid)
            batch.xack(self.keys.nudges(sid), NUDGE_GROUP, acks)
            return await self._write(sid, batch, events)

    async def record_standing(self, nudge: Nudge, event: Event, ack: str) -> list[Frame]:
        """Keep a standing nudge for every present and future agent of its session, and
        ack its stream entry, atomically; agents then record it as usual."""
        sid = nudge.session
        async with self._lock(sid):
            batch = self._batch(sid)
            batch.rpush(self.keys.standing(sid), [nudge.model_dump_json()])
            batch.xack(self.keys.nudges(sid), NUDGE_GROUP, [ack])
            return await self._write(sid, batch, [event])

    async def load_standing(self, sid: str) -> list[Nudge]:
        """The session's standing nudges, oldest first, each once."""
        key = self.keys.standing(sid)
        raw: list[str] = await self.redis.lrange(key, 0, -1)
        nudges = {n.nudge_id: n for n in (_parse(key, r, Nudge.model_validate_json) for r in raw)}
        return list(nudges.values())

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
        return [_parse(key, fields["frame"], Frame.model_validate_json) for _, fields in entries]

    async def last_seq(self, sid: str) -> int:
        entries = await self.redis.xrevrange(self.keys.events(sid), count=1)
        return int(entries[0][0].split("-")[0]) if entries else 0

    def known_seq(self, sid: str) -> int:
        """The last seq committed by this process (or read by `load_sessions`)."""
        return self._seq.get(sid, 0)

    # -- nudges -----------------------------------------------------------------

    async def read_nudges(self, sid: str, *, start: str, count: int = 100) -> list[NudgeEntry]:
        """Entries of the session's nudge stream: new ones (`start=">"`), or those read
        before and not acknowledged, after the id `start`. Refused unless owned."""
        token = self.tokens.get(sid)
        if token is None:
            raise NotOwner(f"this daemon does not own {sid}")
        k = self.keys
        reply = await READ_NUDGES(self.raw, [k.lease(sid), k.nudges(sid)], [token, start, count])
        entries = reply[0][1] if reply else []
        return [
            NudgeEntry(_text(entry_id), _pairs(fields) if fields else None)
            for entry_id, fields in entries
        ]

    async def stream_tops(self, sids: Sequence[str]) -> dict[str, str | None]:
        """The id of the last entry of each session's nudge stream, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.xrevrange(self.keys.nudges(sid), count=1)
            replies = await pipe.execute()
        return {sid: r[0][0] if r else None for sid, r in zip(sids, replies, strict=True)}

    async def ack(self, sid: str, entry_ids: Sequence[str]) -> None:
        """Acknowledge entries whose nudges are already recorded (a redelivery)."""
        if entry_ids:
            await self.redis.xack(self.keys.nudges(sid), NUDGE_GROUP, *entry_ids)

    async def send_nudge(self, fields: dict[str, str]) -> str:
        """Append a nudge to its session's stream and ring the doorbell for its owner."""
        sid = fields["session"]
        entry_id: str = await self.redis.xadd(self.keys.nudges(sid), fields)
        await self.redis.publish(self.keys.doorbell, sid)
        return entry_id

    # -- internals --------------------------------------------------------------

    def _lock(self, sid: str) -> asyncio.Lock:
        return self._locks.setdefault(sid, asyncio.Lock())

    def _batch(self, sid: str) -> Batch:
        return Batch(lease=self.keys.lease(sid), events=self.keys.events(sid))

    async def _write(self, sid: str, batch: Batch, events: Sequence[Event]) -> list[Frame]:
        """Number `events` after the session's last seq, add them to `batch` and run it
        fenced by this daemon's lease; the seq cache stays true either way."""
        token = self.tokens.get(sid)
        if token is None:
            raise NotOwner(f"this daemon does not own {sid}")
        if sid not in self._seq:
            self._seq[sid] = await self.last_seq(sid)
        batch.after_seq = self._seq[sid]
        now = time.time()
        frames = [
            Frame(session=sid, seq=batch.after_seq + 1 + i, ts=now, event=event)
            for i, event in enumerate(events)
        ]
        for frame in frames:
            # `owner`: the writer's lease token, so an audit can prove no stale write landed.
            fields = {"frame": frame.model_dump_json(), "owner": token}
            batch.xadd(self.keys.events(sid), f"{frame.seq}-0", fields)
        if frames:
            batch.announce = (self.keys.committed, f"{sid} {frames[0].seq}")
        try:
            await batch.run(self.redis, token)
        except BaseException:
            # It may or may not have run (a lost reply): re-read the sequence next time.
            self._seq.pop(sid, None)
            raise
        if frames:
            self._seq[sid] = frames[-1].seq
        return frames


def _parse(key: str, raw: str, parse: Any) -> Any:
    try:
        return parse(raw)
    except (ValueError, ValidationError) as exc:
        raise CorruptRecord(f"{key} holds a value steer cannot read: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Iterable[bytes]) -> dict[bytes, bytes]:
    items = list(flat)
    return dict(zip(items[::2], items[1::2], strict=True))


def _dumps(message: JsonValue) -> str:
    # Compact and key-order-preserving: what is stored is what is re-sent.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
