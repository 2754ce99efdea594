"""The directory: every session on this Redis, wherever it runs.

A daemon's API and dashboard serve all sessions, not only those it owns. The ones it
owns are answered from memory (its supervisor's runners, as of their last commit);
the others from what their owners committed to Redis: the spec, each agent's config
and small state, the conversation and the event stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from daemon import life_store
from daemon.agent_core import AgentCore
from daemon.agent_state import ROOT, Message
from daemon.errors import UnknownAgent, UnknownSession
from daemon.guards import rule_summaries
from daemon.store import CorruptRecord, Store
from protocol.sessions import SessionSummary

if TYPE_CHECKING:
    from daemon.supervisor import Supervisor


class Directory:
    def __init__(
        self, supervisor: Supervisor, store: Store, names: Callable[[], Mapping[str, str]]
    ) -> None:
        self._supervisor = supervisor
        self._store = store
        #: Every session's name as last read from Redis (refreshed every second or so).
        self._names = names

    def owns(self, sid: str) -> bool:
        return self._supervisor.owns(sid)

    def known_ids(self) -> list[str]:
        """Every session known here: owned ones, and those last read from Redis."""
        local = self._supervisor.session_ids()
        archived = self._supervisor.ownership.archived
        return local + sorted(set(self._names()) - set(local) - archived)

    async def resolve(self, ref: str) -> str:
        """A session id from an id, a unique id prefix or a name, among all sessions: an
        exact id or name costs a lookup or two, only a prefix reads every name."""
        try:
            return self._supervisor.resolve(ref)
        except UnknownSession:
            pass
        if sid := await self._store.named(ref):
            return sid
        return match_session(ref, await self._store.session_names())

    async def summary(self, sid: str) -> SessionSummary:
        if self.owns(sid):
            return self._supervisor.summary(sid)
        spec = await self._store.load_spec(sid)
        if spec is None:
            raise UnknownSession(f"unknown session {sid!r}")
        marks = (await life_store.flags(self._store, [sid]))[sid]
        agents = [
            AgentCore(config, state).summary()
            for config, state in await self._store.load_agent_states(sid)
        ]
        root = next((a for a in agents if a.agent == ROOT), None)
        return SessionSummary(
            spec=spec,
            status=root.status if root else "done",
            agents=agents,
            last_seq=await self._store.last_seq(sid),
            rules=rule_summaries(await self._store.load_standing(sid), agents),
            archived=marks.archived,
            imported=marks.imported,
            budget=await self._store.load_budget(sid),
        )

    async def summaries(
        self, *, archived: bool = False, memory: bool = False
    ) -> list[SessionSummary]:
        """Every session (archived ones too with `archived`, each with its memory in
        Redis with `memory`); while Redis is down, those this daemon owns (from memory)."""
        found = await self._summaries()
        if not archived:
            found = [s for s in found if not s.archived]
        if memory and found:
            sizes = await life_store.memory(self._store, [s.spec.id for s in found])
            found = [s.model_copy(update={"memory_bytes": sizes[s.spec.id]}) for s in found]
        return found

    async def _summaries(self) -> list[SessionSummary]:
        try:
            names = set(await self._store.session_names())
        except (RedisError, OSError):
            names = set()
        # Owned as of now, after the wait: a session may have been dropped meanwhile.
        local = self._supervisor.session_ids()
        others = names - set(local)
        found = [self._supervisor.summary(sid) for sid in local]
        for sid in sorted(others):
            try:
                found.append(await self.summary(sid))
            except (UnknownSession, CorruptRecord, RedisError, OSError, UnicodeDecodeError):
                # Listed but never written whole, or unreadable: a value steer cannot parse,
                # a key of another type or bytes that are not UTF-8 (logged by its owner);
                # or Redis went away meanwhile.
                continue
        return sorted(found, key=lambda s: s.spec.created_at)

    async def messages(self, sid: str, agent: str) -> list[Message]:
        if self.owns(sid):
            return await self._supervisor.messages(sid, agent)
        if not await self._store.has_agent(sid, agent):
            raise UnknownAgent(f"unknown agent {sid}/{agent}")
        return await self._store.load_messages(sid, agent)

    async def has_agent(self, sid: str, agent: str) -> bool:
        if self.owns(sid):
            return self._supervisor.owns(sid, agent)
        return await self._store.has_agent(sid, agent)


def match_session(ref: str, names: Mapping[str, str]) -> str:
    """The session `ref` names among `names` (id -> name): an exact id, an exact name or
    a unique id prefix."""
    if ref in names:
        return ref
    matches = [sid for sid, name in names.items() if name == ref]
    matches = matches or [sid for sid in names if sid.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownSession(f"unknown session {ref!r}")
    raise UnknownSession(f"ambiguous session {ref!r}: {', '.join(sorted(matches))}")
