"""The supervisor: starts and resumes sessions, owns their agent runners, and
consumes the nudge stream.

Nudge delivery is at-least-once from Redis and effectively-once here: an entry is
only acknowledged in the MULTI that records it in its agent's state (or reports it
rejected), and a restarted consumer first re-reads its own pending entries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError

from daemon.agent_core import AgentCore
from daemon.agent_state import ROOT, AgentConfig
from daemon.catalog import model_info
from daemon.errors import CommandError, UnknownSession
from daemon.model_client import ModelClient
from daemon.prompts import system_prompt
from daemon.runner import AgentRunner, FrameSink, NudgeInput, ResumeInput, cancelling
from daemon.store import NudgeEntry, Store
from daemon.tools import TOOL_SPECS
from protocol.events import Event, NudgeRejected, SessionCreated
from protocol.nudges import Nudge, SendNudge
from protocol.sessions import AgentSummary, SessionSpec, SessionSummary, StartSession

log = logging.getLogger("steer.supervisor")

CONSUMER = "steerd"
NUDGE_BLOCK_MS = 1_000
RETRY_DELAY_S = 0.5
STOP_RECANCEL_S = 0.2


class Supervisor:
    def __init__(
        self,
        store: Store,
        model: ModelClient,
        *,
        default_model: str,
        on_frames: FrameSink | None = None,
    ) -> None:
        self.store = store
        self._model = model
        self._default_model = default_model
        self._on_frames = on_frames
        self._specs: dict[str, SessionSpec] = {}
        self._runners: dict[str, dict[str, AgentRunner]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Resume every stored session where it stopped, then start consuming nudges."""
        await self.store.ensure_nudge_group()
        for sid in await self.store.session_names():
            spec = await self.store.load_spec(sid)
            if spec is None:
                continue
            self._specs[sid] = spec
            for stored in await self.store.load_agents(sid):
                self._launch(AgentCore(stored.config, stored.state, stored.messages))
        log.info("supervisor.started sessions=%d", len(self._specs))
        self._spawn(self._consume_nudges())

    async def stop(self) -> None:
        # redis-py retries a command whose connection broke, and a cancelled blocking read
        # can look like one: a single cancel() may be absorbed, so repeat until all ended.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_RECANCEL_S)
        self._tasks.clear()

    # -- verbs ------------------------------------------------------------------

    async def create_session(self, request: StartSession) -> SessionSpec:
        names = await self.store.session_names()
        sid = _new_id(names)
        model = request.model or self._default_model
        spec = SessionSpec(
            id=sid,
            name=request.name or _default_name(request.task, set(names.values())),
            task=request.task,
            workdir=request.workdir,
            model=model,
            created_at=time.time(),
        )
        root = AgentConfig(
            session=sid,
            agent=ROOT,
            task=request.task,
            workdir=request.workdir,
            model=model,
            system=system_prompt(request.workdir),
            tools=TOOL_SPECS,
            system_messages=model_info(model).system_messages,
        )
        await self.store.create_session(spec, root)
        await self._emit(sid, [SessionCreated(agent=ROOT, spec=spec)])
        self._specs[sid] = spec
        self._launch(AgentCore(root))
        log.info("session.created sid=%s name=%s model=%s", sid, spec.name, model)
        return spec

    def resolve(self, ref: str) -> str:
        """A session id from an id, a unique id prefix or a name."""
        if ref in self._specs:
            return ref
        named = [sid for sid, spec in self._specs.items() if spec.name == ref]
        matches = named or [sid for sid in self._specs if sid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownSession(f"unknown session {ref!r}")
        raise UnknownSession(f"ambiguous session {ref!r}: {', '.join(sorted(matches))}")

    def summaries(self) -> list[SessionSummary]:
        return [self.summary(sid) for sid in sorted(self._specs, key=self._created_at)]

    def summary(self, sid: str) -> SessionSummary:
        agents = [_summary_of(r.core) for r in self._runners.get(sid, {}).values()]
        root = next((a for a in agents if a.agent == ROOT), None)
        return SessionSummary(
            spec=self._specs[sid], status=root.status if root else "done", agents=agents
        )

    def core(self, sid: str, agent: str = ROOT) -> AgentCore:
        runner = self._runners.get(sid, {}).get(agent)
        if runner is None:
            raise UnknownSession(f"unknown agent {sid}/{agent}")
        return runner.core

    def resume(self, sid: str, agent: str | None = None) -> None:
        for aid, runner in self._runners.get(sid, {}).items():
            if agent is None or aid == agent:
                runner.deliver(ResumeInput())

    # Control verbs. Each returns once the verb took effect on every agent concerned
    # (persisted, events emitted) and raises CommandError when it cannot.

    async def send_nudge(self, sid: str, body: SendNudge) -> Nudge:
        """Queue a nudge on the nudge stream (any mode); returns it as queued."""
        raise CommandError("conflict", "not built yet")

    async def pause_agents(self, sid: str, agent: str | None, *, now: bool, author: str) -> None:
        raise CommandError("conflict", "not built yet")

    async def resume_agents(self, sid: str, agent: str | None, *, author: str) -> None:
        raise CommandError("conflict", "not built yet")

    async def veto(self, sid: str, agent: str | None, *, reason: str | None, author: str) -> None:
        raise CommandError("conflict", "not built yet")

    async def decide(
        self,
        sid: str,
        agent: str | None,
        call_id: str,
        *,
        approve: bool,
        reason: str | None,
        author: str,
    ) -> None:
        raise CommandError("conflict", "not built yet")

    # -- internals --------------------------------------------------------------

    def _created_at(self, sid: str) -> float:
        return self._specs[sid].created_at

    def _launch(self, core: AgentCore) -> None:
        runner = AgentRunner(core, model=self._model, store=self.store, on_frames=self._on_frames)
        self._runners.setdefault(core.config.session, {})[core.config.agent] = runner
        self._spawn(runner.run(), name=f"agent {core.config.session}/{core.config.agent}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervisor.task_died task=%s", task.get_name(), exc_info=task.exception())

    async def _emit(self, sid: str, events: Sequence[Event], acks: Sequence[str] = ()) -> None:
        frames = await self.store.append_events(sid, events, acks)
        if self._on_frames is not None:
            self._on_frames(frames)

    async def _consume_nudges(self) -> None:
        pending = True  # after a restart, first re-read what we took but never acked
        while True:
            try:
                entries = await self.store.read_nudges(
                    CONSUMER, pending=pending, block_ms=NUDGE_BLOCK_MS
                )
                if pending and not entries:
                    pending = False
                for entry in entries:
                    await self._route(entry)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.error("nudges.history_lost: the nudge stream or its group vanished")
                await self.store.ensure_nudge_group()
            except (RedisError, OSError) as exc:
                if cancelling():
                    raise  # redis-py can turn a cancelled blocking read into ConnectionError
                log.warning("nudges.redis_unavailable error=%s", exc)
                await asyncio.sleep(RETRY_DELAY_S)
                pending = True

    async def _route(self, entry: NudgeEntry) -> None:
        nudge_id = entry.fields.get("nudge_id") or entry.entry_id
        session = entry.fields.get("session", "")
        if not entry.fields:
            log.error("nudge.lost_to_trimming entry=%s", entry.entry_id)
            await self.store.reject_unknown(nudge_id, session, "lost to trimming", entry.entry_id)
            return
        try:
            nudge = Nudge.from_fields(entry.fields)
        except ValidationError as exc:
            reason = "; ".join(e["msg"] for e in exc.errors())
            await self._reject(nudge_id, session, f"invalid nudge: {reason}", entry.entry_id)
            return
        runner = self._runners.get(nudge.session, {}).get(nudge.agent or ROOT)
        if runner is None:
            await self._reject(nudge_id, session, f"no agent {nudge.target}", entry.entry_id)
            return
        runner.deliver(NudgeInput(nudge, entry.entry_id))

    async def _reject(self, nudge_id: str, session: str, reason: str, entry_id: str) -> None:
        log.warning("nudge.rejected nudge=%s session=%s reason=%s", nudge_id, session, reason)
        if session in self._specs:
            event = NudgeRejected(agent="", nudge_id=nudge_id, reason=reason)
            await self._emit(session, [event], acks=[entry_id])
        else:
            await self.store.reject_unknown(nudge_id, session, reason, entry_id)


def _summary_of(core: AgentCore) -> AgentSummary:
    state = core.state
    return AgentSummary(
        session=core.config.session,
        agent=core.config.agent,
        parent=core.config.parent,
        status=state.status,
        model=core.config.model,
        requests=state.requests,
        usage=state.usage,
        cost_usd=state.cost_usd,
        last_cached_share=state.last_cached_share,
        error=state.error,
    )


def _new_id(taken: dict[str, str]) -> str:
    while True:
        sid = f"s-{secrets.token_hex(3)}"
        if sid not in taken:
            return sid


def _default_name(task: str, taken: set[str]) -> str:
    words = re.findall(r"[a-z0-9]+", task.lower())[:4]
    base = "-".join(words)[:32] or "session"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name
