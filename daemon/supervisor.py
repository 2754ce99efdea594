"""The supervisor: the sessions this daemon owns, their agent runners, the operator's
verbs and subagents.

Which sessions it owns is `daemon.ownership`'s business (leases with fencing epochs);
their nudges come from `daemon.intake`. Both call back into the supervisor (a session
claimed or lost, a nudge or a bad entry) rather than importing it.

Nudge delivery is at-least-once from Redis and effectively-once here: an entry is
only acknowledged in the write that records it in its agent's state (or reports it
rejected, or keeps it as a standing nudge of its session), and a new owner first
re-reads the entries its predecessor took and never acknowledged.

Subagents run concurrently up to their session's cap (`daemon.slots`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from daemon import life_store
from daemon.agent_core import OVER, AgentCore
from daemon.agent_state import (
    ROOT,
    AgentConfig,
    AgentState,
    Message,
    ReviewReport,
    RunReview,
    Step,
    ToolCall,
)
from daemon.budget import SessionBudget, merged, refuse_unpriced
from daemon.catalog import model_info
from daemon.directory import Directory, match_session
from daemon.errors import CommandError, UnknownAgent
from daemon.guards import Globs, Guard, ProtectedFile, capture, default_protect, rule_summaries
from daemon.intake import NudgeIntake
from daemon.model_client import ModelClient
from daemon.ownership import LEASE_TTL_MS, Ownership
from daemon.prices import DEFAULT_PRICES, PriceTable
from daemon.prompts import system_prompt
from daemon.relay import Relay
from daemon.review import (
    review_task,
    reviewer_name,
    reviewer_system,
    reviewer_tools,
)
from daemon.runner import (
    UNLOAD_AFTER_S,
    AgentRunner,
    Control,
    DeltaSink,
    FrameSink,
    NudgeInput,
    StartInput,
    rests,
)
from daemon.slots import SlotPool
from daemon.store import Store, StoredSession
from daemon.subagents import MAX_DEPTH, SPAWN_SPEC, ChildTask, parse_spawn, report
from daemon.tools import TOOL_SPECS, ToolOutcome
from daemon.tools.sandbox import Sandbox
from protocol.envelope import Frame
from protocol.events import (
    AgentStarted,
    BudgetSet,
    Event,
    NudgeReceived,
    NudgeRejected,
    SessionCreated,
)
from protocol.nudges import Nudge, SendNudge
from protocol.sessions import SETTLED, Budget, SessionSpec, SessionSummary, StartSession

log = logging.getLogger("steer.supervisor")

STOP_RECANCEL_S = 0.2
#: How long `archive --force` waits for the actions it interrupted to end and be stored.
SETTLE_TIMEOUT_S = 10.0


class Supervisor:
    def __init__(
        self,
        store: Store,
        model: ModelClient,
        *,
        default_model: str,
        sandbox: Sandbox | None = None,
        daemon_id: str | None = None,
        info: dict[str, Any] | None = None,
        lease_ttl_ms: int = LEASE_TTL_MS,
        on_frames: FrameSink | None = None,
        on_delta: DeltaSink | None = None,
        default_budget: Budget | None = None,
        prices: PriceTable = DEFAULT_PRICES,
        simulated: bool = False,
        unload_after_s: float = UNLOAD_AFTER_S,
    ) -> None:
        #: What requests cost, and whether the model is the bundled simulator (its
        #: sessions' costs are labelled simulated).
        self.prices = prices
        self._simulated = simulated
        #: How long an agent at rest keeps its conversation in memory (`daemon.runner`).
        self._unload_after_s = unload_after_s
        self.store = store
        #: The budget of a session whose start sets none (STEER_BUDGET_USD/TOKENS).
        self._default_budget = default_budget
        self._model = model
        self._default_model = default_model
        self._sandbox = sandbox
        self._on_frames = on_frames
        self._on_delta = on_delta
        self.daemon_id = daemon_id or f"d-{secrets.token_hex(4)}"
        self.ownership = Ownership(
            store,
            self.daemon_id,
            info={"pid": os.getpid(), **(info or {})},
            on_claimed=self._load_sessions,
            on_lost=self._lost,
            ttl_ms=lease_ttl_ms,
        )
        self.intake = NudgeIntake(
            store, owned=lambda: self._specs, on_nudge=self._route, on_invalid=self._reject
        )
        #: Verbs to and from other daemons, and their sessions' frames for the hub.
        self.relay = Relay(store, owned=lambda: self._specs, publish=on_frames)
        #: Every session on this Redis, owned here or elsewhere.
        self.directory = Directory(self, store, lambda: self.ownership.names)
        self._specs: dict[str, SessionSpec] = {}
        self._runners: dict[str, dict[str, AgentRunner]] = {}
        self._slots: dict[str, SlotPool] = {}
        #: Each session's standing nudges, for the agents it has and will have.
        self._standing: dict[str, list[Nudge]] = {}
        #: Each session's copy of its protected files, as it was created.
        self._protected: dict[str, dict[str, ProtectedFile]] = {}
        #: Each session's budget and what its agents have spent (`daemon.budget`).
        self._budgets: dict[str, SessionBudget] = {}
        #: Tasks of each session (its agents and slots), cancelled when it is lost.
        self._session_tasks: dict[str, set[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set by `stop`: no task starts after it (an agent woken meanwhile stays asleep).
        self._stopping = False

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Claim this daemon's sessions and resume them where they stopped, then keep
        the leases, take over orphans and read nudges in the background."""
        await self.ownership.start()
        log.info("supervisor.started daemon=%s sessions=%d", self.daemon_id, len(self._specs))
        # Each loop a task of its own, so that `stop` cancels each until it has ended.
        self._spawn(self.ownership.keep_leases(), name="ownership leases")
        self._spawn(self.ownership.take_over(), name="ownership takeover")
        self._spawn(self.intake.run(), name="intake")
        self._spawn(self.relay.run(), name="relay")

    async def stop(self, *, release: bool = True) -> None:
        """Stop every task; with `release`, let other daemons take the sessions at once."""
        # redis-py retries a command whose connection broke, and a cancelled blocking read
        # can look like one: a single cancel() may be absorbed, so repeat until all ended.
        self._stopping = True
        pending = set(self._tasks)
        rounds = 0
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_RECANCEL_S)
            rounds += 1
            if rounds % 25 == 0:  # every 5 s: say what does not end
                names = ", ".join(sorted(t.get_name() for t in pending))
                log.warning("supervisor.stop_waiting tasks=%s", names)
        self._tasks.clear()
        if release:
            await self.ownership.stop()

    # -- sessions -----------------------------------------------------------------

    async def create_session(self, request: StartSession) -> SessionSpec:
        # A fresh id: the claim below refuses one ever used (1 in 16 million).
        sid = f"s-{secrets.token_hex(3)}"
        model = request.model or self._default_model
        budget, what = self._default_budget, "the daemon's default budget (STEER_BUDGET_USD)"
        if request.budget_usd is not None or request.budget_tokens is not None:
            budget = Budget(usd=request.budget_usd, tokens=request.budget_tokens)
            what = "a USD budget"
        refuse_unpriced(budget, model, priced=self.prices.price(model) is not None, what=what)
        # Ground truth no agent may change: by default, the files the checks name.
        protect = request.protect or default_protect(request.checks, request.workdir)
        protected = await asyncio.to_thread(capture, Path(request.workdir), Globs.of(protect))
        spec = SessionSpec(
            id=sid,
            name=request.name
            or await self.store.reserve_default_name(_name_stem(request.task), sid),
            task=request.task,
            workdir=request.workdir,
            model=model,
            created_at=time.time(),
            approve=request.approve,
            max_parallel_subagents=request.max_parallel_subagents,
            checks=request.checks,
            max_attempts=request.max_attempts,
            check_timeout_s=request.check_timeout_s,
            protect=protect,
            review_rounds=request.review_rounds,
            simulated=self._simulated,
        )
        root = AgentConfig(
            session=sid,
            agent=ROOT,
            task=request.task,
            workdir=request.workdir,
            model=model,
            system=system_prompt(request.workdir),
            tools=[*TOOL_SPECS, SPAWN_SPEC],
            system_messages=model_info(model).system_messages,
            approve=request.approve,
            checks=spec.checks,
            max_attempts=spec.max_attempts,
            check_timeout_s=spec.check_timeout_s,
            review_rounds=spec.review_rounds,
            protect=spec.protect,
        )
        frames = await self.store.create_session(
            spec,
            root,
            [SessionCreated(agent=ROOT, spec=spec), _started(root)],
            daemon_id=self.daemon_id,
            ttl_ms=self.ownership.ttl_ms,
            protected=protected,
            budget=budget,
        )
        if frames is None:  # the id was used before: try another
            return await self.create_session(request)
        self._publish(frames)
        self._open(spec, protected=protected, budget=budget)
        self._launch(AgentCore(root, prices=self.prices))
        self.intake.open(sid)
        self.relay.open(sid, None)  # a new session: no verb was sent to it yet
        log.info("session.created sid=%s name=%s model=%s", sid, spec.name, model)
        return spec

    def resolve(self, ref: str) -> str:
        """A session id of this daemon's, from an id, a unique id prefix or a name."""
        if ref in self._specs:
            return ref
        return match_session(ref, {sid: spec.name for sid, spec in self._specs.items()})

    def owns(self, sid: str, agent: str | None = None) -> bool:
        """Whether this daemon drives the session (and it has `agent`)."""
        return sid in self._specs and (agent is None or agent in self._runners[sid])

    def session_ids(self) -> list[str]:
        """Every session's id, oldest first."""
        return sorted(self._specs, key=self._created_at)

    def summaries(self) -> list[SessionSummary]:
        return [self.summary(sid) for sid in self.session_ids()]

    def summary(self, sid: str) -> SessionSummary:
        # The runners' summaries as of their last commit, so they agree with `last_seq`.
        agents = [r.summary for r in self._runners.get(sid, {}).values()]
        root = next((a for a in agents if a.agent == ROOT), None)
        return SessionSummary(
            spec=self._specs[sid],
            status=root.status if root else "done",
            agents=agents,
            last_seq=self.store.known_seq(sid),
            rules=rule_summaries(self._standing.get(sid, []), agents),
            budget=self._budgets[sid].limit,
        )

    def core(self, sid: str, agent: str = ROOT) -> AgentCore:
        """The agent's core; one at rest may hold no conversation (see `messages`)."""
        return self._runner(sid, agent).core

    async def messages(self, sid: str, agent: str = ROOT) -> list[Message]:
        """The agent's conversation as committed."""
        return await self._runner(sid, agent).messages()

    # -- verbs --------------------------------------------------------------------
    # Each returns once the verb is persisted for every agent concerned, and raises
    # CommandError when it cannot apply.

    async def send_nudge(self, sid: str, body: SendNudge) -> Nudge:
        """Queue a nudge on the session's stream (any mode), wherever the session runs;
        returns it as queued."""
        agent = body.agent if body.agent not in (None, ROOT) else None
        if not await self.directory.has_agent(sid, agent or ROOT):
            raise UnknownAgent(f"unknown agent {sid}/{agent}")  # refused now, not later
        if closed := await self._closed(sid, agent or ROOT):  # as the `nudge` command does
            raise CommandError("conflict", f"{sid}/{agent or ROOT}: {closed}")
        nudge = Nudge(
            nudge_id=body.nudge_id or f"n-{os.urandom(8).hex()}",
            session=sid,
            agent=agent,
            mode=body.mode,
            text=body.text,
            author=body.author,
            sent_at=time.time(),
            standing=body.standing or body.rule_regex is not None or body.rule_cmd is not None,
            rule_regex=body.rule_regex,
            rule_cmd=body.rule_cmd,
            rule_veto=body.rule_veto,
        )
        await self.store.send_nudge(nudge.to_fields())
        return nudge

    async def pause_agents(self, sid: str, agent: str | None, *, now: bool, author: str) -> None:
        """Pause one agent, or every agent of the session that has not settled."""
        await self._control(
            self._targets(sid, agent, "can be paused", lambda c: c.state.status not in SETTLED),
            lambda core: core.pause(now=now, author=author),
        )

    async def resume_agents(self, sid: str, agent: str | None, *, author: str) -> None:
        """Resume one agent, or every paused or failed agent of the session."""

        await self._control(
            # One held by the budget is a target too, so that the refusal says why.
            self._targets(
                sid,
                agent,
                "is paused or failed",
                lambda core: core.resumable or core.state.status == "budget_reached",
            ),
            lambda core: core.resume(author=author),
        )

    async def veto(self, sid: str, agent: str | None, *, reason: str | None, author: str) -> None:
        """Stop an agent (the root agent by default) and all its descendants."""
        target = self._runner(sid, agent or ROOT)
        below = self._descendants(sid, target.core.config.agent)
        await self._control(  # the core refuses a done target; done descendants are left
            [target, *(r for r in below if r.core.state.status not in ("done", "vetoed"))],
            lambda core: core.veto(reason=reason, author=author),
        )

    async def set_budget(
        self, sid: str, *, usd: float | None, tokens: int | None, author: str
    ) -> Budget:
        """Set the session's budget (the limits given; the others stay); every agent
        held as `budget_reached` goes on if the new budget allows."""
        kept = self._budgets[sid]
        budget = merged(kept.limit, usd=usd, tokens=tokens)
        model = self._specs[sid].model
        refuse_unpriced(budget, model, priced=self.prices.price(model) is not None)
        event = BudgetSet(agent=ROOT, budget=budget, author=author)
        self._publish(await self.store.set_budget(sid, budget, [event]))
        kept.limit = budget
        held = [r for r in self._runners[sid].values() if r.core.state.status == "budget_reached"]
        await self._control(held, lambda core: core.budget_changed())
        return budget

    async def check_now(self, sid: str, *, author: str) -> None:
        """Run the session's acceptance checks now (its root agent must be at rest)."""
        await self._control([self._runner(sid, ROOT)], lambda core: core.check_now(author=author))

    async def approve_session(self, sid: str, *, author: str) -> None:
        """Accept the reviewed work of a session awaiting approval: it ends as done."""
        await self._control(
            [self._runner(sid, ROOT)], lambda core: core.approve_done(author=author)
        )

    async def end_session(self, sid: str, *, author: str) -> None:
        """End the session on purpose (`steer done`): the root agent and every agent that
        has not settled stop what they run and end as done."""
        status = self._runner(sid, ROOT).core.state.status
        if status in OVER:
            raise CommandError("conflict", f"session {sid} is {status}; there is nothing to end")
        await self._end_all(sid, author)

    async def archive_session(self, sid: str, *, author: str, force: bool) -> None:
        """Stop driving the session and keep it archived (`daemon.life_store`); one at
        work is refused, or with `force` ended first."""
        await self._settle_for(sid, "archive", author=author, force=force)
        if not await life_store.archive(self.store, sid, self.store.tokens.get(sid), author):
            raise CommandError("unavailable", f"session {sid} changed hands meanwhile; retry")
        self._lost(sid)  # after the mark: no scan of this daemon claims it back meanwhile
        log.info("session.archived sid=%s by=%s", sid, author)

    async def remove_session(self, sid: str, *, author: str, force: bool) -> int:
        """Stop driving the session and delete every key it has; how many there were."""
        await self._settle_for(sid, "rm", author=author, force=force)  # tools end cleanly
        name = self._specs[sid].name
        # Archived first: the lease goes in the same script, so whatever its agents still
        # write is fenced, and no daemon claims it before its keys are gone.
        await life_store.archive(self.store, sid, self.store.tokens.get(sid), author)
        self._lost(sid)
        removed = await life_store.remove(self.store, sid, name)
        log.info("session.removed sid=%s by=%s keys=%d", sid, author, removed)
        return removed

    async def _settle_for(self, sid: str, verb: str, *, author: str, force: bool) -> None:
        """Refuse `verb` on a session at work, or with `force` end it and wait until what
        its agents were running has ended and been stored."""
        busy = life_store.at_work(self.summary(sid).agents)
        if not busy:
            return
        if not force:
            raise life_store.busy_refusal(verb, sid, busy)
        await self._end_all(sid, author)
        runners = list(self._runners.get(sid, {}).values())
        try:  # interrupted actions end within moments
            async with asyncio.timeout(SETTLE_TIMEOUT_S):
                await asyncio.gather(*(r.until_quiet() for r in runners))
        except TimeoutError:
            log.warning("session.not_quiet sid=%s: archived all the same", sid)

    async def _end_all(self, sid: str, author: str) -> None:
        # Delivered at once: a child has its end before its interrupted parent's veto.
        targets = [
            r
            for r in self._runners[sid].values()
            if r.core.state.status not in SETTLED or r.core.config.parent is None
        ]
        await self._control(
            [r for r in targets if r.core.state.status not in OVER],
            lambda core: core.end(author=author),
        )

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
        """Approve or deny a tool call waiting for the operator."""
        runners = [self._runner(sid, agent)] if agent else self._runners.get(sid, {}).values()
        waiting = [
            r for r in runners if any(p.call_id == call_id for p in r.core.pending_approvals())
        ]
        if not waiting:
            raise CommandError("not_pending", f"no tool call {call_id} awaits a decision")
        await self._control(
            waiting[:1],
            lambda core: core.decide(call_id, approve=approve, reason=reason, author=author),
        )

    # -- subagents ------------------------------------------------------------------

    async def spawn(self, parent: AgentCore, call: ToolCall) -> ToolOutcome:
        """Run a spawn_agents call: start its children (or find them, after a restart),
        wait until each has settled, and report."""
        request = parse_spawn(call.input)
        if isinstance(request, str):
            return ToolOutcome(request, True)
        sid = parent.config.session
        existing = {
            r.core.config.index: r
            for r in self._runners[sid].values()
            if r.core.config.parent_call == call.id
        }
        children = [
            existing.get(i) or await self._create_child(parent.config, call.id, i, task)
            for i, task in enumerate(request.agents)
        ]
        slots = self._slots[sid]
        slots.give_back(parent.config.agent)  # a waiting parent holds no slot
        await _settled(children, called_off="its parent was interrupted")
        if parent.config.parent is not None:
            await slots.take(parent.config.agent)
        reports = [await c.report() for c in children]
        return ToolOutcome(
            report(
                [(c.core.config, c.core.state, r) for c, r in zip(children, reports, strict=True)]
            ),
            False,
        )

    async def review(self, agent: AgentCore, action: RunReview) -> ReviewReport:
        """Run a review round: start its reviewer (or find it, after a restart), wait
        until it settles, and hand back its findings."""
        sid, aid = agent.config.session, agent.config.agent
        reviewer = next(
            (
                r
                for r in self._runners[sid].values()
                if r.core.config.parent == aid and r.core.config.parent_call == action.key
            ),
            None,
        ) or await self._create_reviewer(agent.config, action)
        await _settled([reviewer], called_off="the review was called off")
        core = reviewer.core
        problem = None
        if core.state.status == "vetoed":
            problem = f"its reviewer {core.config.agent} was vetoed"
        elif core.state.status != "done":
            problem = f"its reviewer {core.config.agent} failed: {core.state.error}"
        return ReviewReport(
            round=action.round,
            reviewer=core.config.agent,
            findings=await reviewer.report() if problem is None else "",
            finished_at=time.time(),
            problem=problem,
        )

    async def _create_reviewer(self, agent: AgentConfig, action: RunReview) -> AgentRunner:
        """A fresh reviewer: a subagent with its own context and read-only tools."""
        sid = agent.session
        config = AgentConfig(
            session=sid,
            agent=f"a{len(self._runners[sid])}",
            parent=agent.agent,
            parent_call=action.key,
            depth=agent.depth + 1,
            name=reviewer_name(action.round),
            task=review_task(agent.task, action.workspace, action.round, agent.review_rounds),
            workdir=agent.workdir,
            model=agent.model,
            system=reviewer_system(agent.workdir),
            tools=reviewer_tools(),
            system_messages=agent.system_messages,
            approve=self._specs[sid].approve,
        )
        return await self._add_subagent(config)

    async def _create_child(
        self, parent: AgentConfig, call_id: str, index: int, task: ChildTask
    ) -> AgentRunner:
        sid = parent.session
        spec = self._specs[sid]
        depth = parent.depth + 1
        config = AgentConfig(
            session=sid,
            agent=f"a{len(self._runners[sid])}",
            parent=parent.agent,
            parent_call=call_id,
            index=index,
            depth=depth,
            name=task.name,
            task=task.task,
            workdir=parent.workdir,
            model=parent.model,
            system=system_prompt(parent.workdir, subagent=True),
            tools=[*TOOL_SPECS, SPAWN_SPEC] if depth < MAX_DEPTH else list(TOOL_SPECS),
            system_messages=parent.system_messages,
            approve=spec.approve,
            # Its own check, or the session's: its report reaches the parent verified.
            checks=[task.check] if task.check else spec.checks,
            max_attempts=spec.max_attempts,
            check_timeout_s=spec.check_timeout_s,
            protect=spec.protect,
        )
        return await self._add_subagent(config)

    async def _add_subagent(self, config: AgentConfig) -> AgentRunner:
        """Store a new subagent and start it once a slot is free."""
        sid = config.session
        state = AgentState(status="queued")
        core = AgentCore(config, state, prices=self.prices)
        runner = self._launch(core, hold_slot=False)  # reserves the id
        self._publish(await self.store.add_agent(config, state, [_started(config)]))
        self._deliver_standing(runner)  # before it starts: they open its conversation
        self._spawn(self._hold_slot(runner), name=f"slot {sid}/{config.agent}", session=sid)
        log.info("agent.spawned sid=%s agent=%s parent=%s", sid, config.agent, config.parent)
        return runner

    async def _hold_slot(self, runner: AgentRunner) -> None:
        """Start a subagent once a slot is free; give the slot back when it settles."""
        config = runner.core.config
        slots = self._slots[config.session]
        await slots.take(config.agent)
        try:
            runner.deliver(StartInput())
            await runner.settled.wait()
        finally:
            slots.give_back(config.agent)

    # -- internals --------------------------------------------------------------

    async def _closed(self, sid: str, aid: str) -> str | None:
        """Why the agent takes no more nudges (`AgentCore.finished`), wherever it runs."""
        if sid in self._specs:
            return self.core(sid, aid).finished
        await life_store.writable(self.store, sid)  # archived or imported: nobody reads it
        for config, state in await self.store.load_agent_states(sid):
            if config.agent == aid:
                return AgentCore(config, state).finished
        return None

    def _created_at(self, sid: str) -> float:
        return self._specs[sid].created_at

    async def _load_sessions(self, sids: Sequence[str]) -> None:
        """Resume sessions just claimed, exactly as after a restart: all of them are read
        (in a few round trips) before any of their agents starts, then their
        unacknowledged nudges are re-read. An agent at rest is resumed without its
        conversation (`runner.rests`): it is read when a nudge or a verb wakes it."""
        loaded = await self.store.load_sessions(
            sids, conversation=lambda state, pending, _: not rests(state, pending)
        )
        for sid, stored in loaded.items():
            if stored is None:
                log.warning("session.missing sid=%s: listed but never written", sid)
            elif isinstance(stored, Exception):
                # Kept (so no daemon loops on it) but not driven; the log names the key,
                # or for bytes that are not UTF-8, which the client refuses to decode, the
                # session.
                log.error("session.unreadable sid=%s error=%s", sid, stored)
            else:
                self._resume(stored)

    def _resume(self, stored: StoredSession) -> None:
        sid = stored.spec.id
        self._open(stored.spec, stored.standing, stored.protected, stored.budget)
        for agent in stored.agents:
            core = AgentCore(
                agent.config,
                agent.state,
                agent.messages,
                pending=agent.pending,
                seen=agent.seen,
                prices=self.prices,
            )
            self._deliver_standing(self._launch(core, loaded=agent.loaded))
        self.intake.open(sid)
        self.relay.open(sid, stored.control_top)

    def _lost(self, sid: str) -> None:
        """Stop driving a session another daemon may own by now: cancel its agents."""
        self.intake.close(sid)
        self.relay.close(sid)
        for task in self._session_tasks.pop(sid, set()):
            task.cancel()
        self._specs.pop(sid, None)
        self._runners.pop(sid, None)
        self._slots.pop(sid, None)
        self._standing.pop(sid, None)
        self._protected.pop(sid, None)
        self._budgets.pop(sid, None)
        self.store.forget(sid)

    def _open(
        self,
        spec: SessionSpec,
        standing: Sequence[Nudge] = (),
        protected: Mapping[str, ProtectedFile] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._specs[spec.id] = spec
        self._protected[spec.id] = dict(protected or {})
        self._budgets[spec.id] = SessionBudget(budget)
        self._runners.setdefault(spec.id, {})
        self._slots[spec.id] = SlotPool(spec.max_parallel_subagents)
        self._standing[spec.id] = list(standing)
        self._session_tasks.setdefault(spec.id, set())

    def _deliver_standing(self, runner: AgentRunner) -> None:
        """Hand an agent the session's standing nudges it has not seen."""
        core = runner.core
        if core.finished is None:
            for nudge in self._standing[core.config.session]:
                if nudge.nudge_id not in core.seen:  # (it skips them too, but woken)
                    runner.deliver(NudgeInput(nudge, None))

    def _launch(
        self, core: AgentCore, *, hold_slot: bool = True, loaded: bool = True
    ) -> AgentRunner:
        """A runner for the agent (`loaded=False`: a core without its conversation)."""
        subagent = core.config.parent is not None
        sid = core.config.session
        name = f"agent {sid}/{core.config.agent}"
        guard = Guard(
            core.config.protect,
            self._protected.get(sid, {}),
            rules=lambda: self._standing.get(sid, []),
        )
        runner = AgentRunner(
            core,
            launch=lambda run: self._spawn(run, name=name, session=sid),
            model=self._model,
            store=self.store,
            spawner=self.spawn,
            reviewer=self.review,
            sandbox=self._sandbox,
            guard=guard,
            on_frames=self._on_frames,
            on_delta=self._on_delta,
            on_fenced=self._fenced,
            autostart=not subagent,
            budget=self._budgets[sid],
            loaded=loaded,
            unload_after_s=self._unload_after_s,
        )
        self._runners[sid][core.config.agent] = runner
        if subagent and hold_slot and core.state.status not in SETTLED:
            self._spawn(
                self._hold_slot(runner), name=f"slot {sid}/{core.config.agent}", session=sid
            )
        return runner

    def _fenced(self, sid: str) -> None:
        """An agent's write was refused: the lease is gone (or the store moved on)."""
        if sid in self._specs:
            log.warning("session.lost sid=%s reason=a write was fenced", sid)
            self._lost(sid)

    def _runner(self, sid: str, agent: str) -> AgentRunner:
        runner = self._runners.get(sid, {}).get(agent)
        if runner is None:
            raise UnknownAgent(f"unknown agent {sid}/{agent}")
        return runner

    def _descendants(self, sid: str, agent: str) -> list[AgentRunner]:
        """Every agent below `agent`, parents before children."""
        found, frontier = [], [agent]
        while frontier:
            children = [r for r in self._runners[sid].values() if r.core.config.parent in frontier]
            found.extend(children)
            frontier = [r.core.config.agent for r in children]
        return found

    def _targets(
        self, sid: str, agent: str | None, what: str, eligible: Callable[[AgentCore], bool]
    ) -> list[AgentRunner]:
        """The named agent (the core decides if it applies), or every eligible one."""
        if agent is not None:
            return [self._runner(sid, agent)]
        targets = [r for r in self._runners.get(sid, {}).values() if eligible(r.core)]
        if not targets:
            raise CommandError("conflict", f"no agent of session {sid} {what}")
        return targets

    async def _control(
        self, runners: Sequence[AgentRunner], apply: Callable[[AgentCore], Step]
    ) -> None:
        loop = asyncio.get_running_loop()
        done = [loop.create_future() for _ in runners]
        for runner, future in zip(runners, done, strict=True):
            runner.deliver(Control(apply, future))
        results = await asyncio.gather(*done, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _spawn(
        self, coro: Coroutine[Any, Any, None], name: str | None = None, session: str | None = None
    ) -> None:
        if self._stopping or (session is not None and session not in self._session_tasks):
            coro.close()  # stopping, or the session was lost: nothing of it runs any more
            return
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        if session is not None:
            self._session_tasks[session].add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        for tasks in self._session_tasks.values():
            tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervisor.task_died task=%s", task.get_name(), exc_info=task.exception())

    async def _emit(self, sid: str, events: Sequence[Event], acks: Sequence[str] = ()) -> None:
        self._publish(await self.store.append_events(sid, events, acks))

    def _publish(self, frames: list[Frame]) -> None:
        if frames and self._on_frames is not None:
            self._on_frames(frames)

    async def _route(self, sid: str, entry_id: str, nudge: Nudge) -> None:
        """A nudge from the session's stream: to its agent, or to all (standing)."""
        if nudge.standing:
            event = NudgeReceived(agent="*", nudge=nudge)
            self._publish(await self.store.record_standing(nudge, event, entry_id))
            standing = self._standing[sid]
            if all(n.nudge_id != nudge.nudge_id for n in standing):  # not a redelivery
                standing.append(nudge)
            for each in self._runners[sid].values():
                if each.core.finished is None:
                    each.deliver(NudgeInput(nudge, None))
            return
        runner = self._runners.get(sid, {}).get(nudge.agent or ROOT)
        if runner is None:
            await self._reject(sid, entry_id, nudge.nudge_id, f"no agent {nudge.target}")
            return
        runner.deliver(NudgeInput(nudge, entry_id))

    async def _reject(self, sid: str, entry_id: str, nudge_id: str, reason: str) -> None:
        """Report a nudge entry that cannot be delivered, once, and acknowledge it."""
        log.warning("nudge.rejected sid=%s nudge=%s reason=%s", sid, nudge_id, reason)
        event = NudgeRejected(agent="", nudge_id=nudge_id, reason=reason)
        await self._emit(sid, [event], acks=[entry_id])


async def _settled(runners: Sequence[AgentRunner], *, called_off: str) -> None:
    """Wait until every one of `runners` has settled. If the waiting agent is cancelled
    meanwhile (redirected, nudged or vetoed), their work has no taker: those still at
    work are vetoed, saying `called_off`."""
    try:
        await asyncio.gather(*(runner.settled.wait() for runner in runners))
    except asyncio.CancelledError:
        for runner in runners:
            if runner.core.state.status not in SETTLED:
                runner.deliver(Control(lambda core: core.veto(reason=called_off, author="steer")))
        raise


def _started(config: AgentConfig) -> AgentStarted:
    return AgentStarted(
        agent=config.agent,
        parent=config.parent,
        parent_call=config.parent_call,
        name=config.name,
        task=config.task,
        model=config.model,
    )


def _name_stem(task: str) -> str:
    """A default name's stem: the task's first words (`Store.reserve_default_name`)."""
    words = re.findall(r"[a-z0-9]+", task.lower())[:4]
    return "-".join(words)[:32] or "session"
