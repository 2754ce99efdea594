"""The agent runner: an asyncio task per agent at work, driving its `AgentCore`.

Everything that happens to an agent (a model reply, finished tools, a nudge, an
operator's verb) becomes one input on its inbox, handled strictly one at a time: feed
the core, persist the step (messages, state, events and any nudge ack in one MULTI),
then start the step's action. The action runs as its own task whose end is posted
back to the inbox, so a nudge is recorded while a model call is still streaming, and
an `Interrupt` can cancel it: the cancelled task's end then becomes `interrupted`.

An agent with nothing to do (its inbox empty, no action running) has no task: the
next input starts one. One resting (`RESTING`) also lets go of its conversation
`UNLOAD_AFTER_S` after its last input (it is read back when an input wakes it), and
one resumed at rest after a restart starts without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from daemon.agent_core import SPAWN_TOOL, AgentCore
from daemon.agent_state import (
    AgentState,
    CallModel,
    Finding,
    Interrupt,
    Message,
    ModelReply,
    ReviewReport,
    RunChecks,
    RunReview,
    RunTools,
    Step,
    ToolCall,
    ToolResult,
)
from daemon.aio import raise_if_cancelled
from daemon.budget import SessionBudget, Spend, spend_of
from daemon.checks import run_checks
from daemon.errors import CommandError
from daemon.fenced import FenceError
from daemon.guards import Guard
from daemon.model_client import ModelCallError, ModelClient, StreamProgress
from daemon.store import Store
from daemon.tools import ToolOutcome, Workspace, run_tool
from daemon.tools.sandbox import Sandbox
from protocol.checks import CheckReport
from protocol.envelope import Frame
from protocol.nudges import Nudge
from protocol.sessions import SETTLED, AgentSummary
from protocol.websocket import TextDelta

log = logging.getLogger("steer.runner")

COMMIT_RETRY_MIN_S = 0.05
COMMIT_RETRY_MAX_S = 2.0
#: How long an agent at rest keeps its conversation in memory after its last input: a
#: burst of nudges reads it once.
UNLOAD_AFTER_S = 30.0
#: Statuses an agent waits in for a nudge or a verb, with nothing to pick up after a
#: restart (`AgentCore.start` answers an empty step, the core holds nothing in memory
#: that its stored state and conversation do not say).
RESTING: frozenset[str] = frozenset(
    {"idle", "failed", "needs_human", "awaiting_approval", "done", "paused", "vetoed"}
)

#: What an action's task ends with: the model's reply, the tools' results, the checks',
#: the reviewer's.
Outcome = ModelReply | list[ToolResult] | CheckReport | ReviewReport
FrameSink = Callable[[list[Frame]], None]
DeltaSink = Callable[[TextDelta], None]
#: Runs a `spawn_agents` call: starts (or finds) the subagents and waits for their reports.
Spawner = Callable[[AgentCore, ToolCall], Awaitable[ToolOutcome]]
#: Runs a review round: starts (or finds) the reviewer and waits for its report.
Reviewer = Callable[[AgentCore, RunReview], Awaitable[ReviewReport]]
#: Runs the runner's task (the supervisor's, so that losing the session cancels it).
Launcher = Callable[[Coroutine[Any, Any, None]], None]


def rests(state: AgentState, pending: Sequence[Nudge]) -> bool:
    """Whether an agent resumed with this state has nothing to do until an input comes."""
    return state.status in RESTING and not pending


@dataclass(frozen=True, slots=True)
class NudgeInput:
    nudge: Nudge
    #: The nudge stream entry to acknowledge with the step; None when already acked
    #: (a standing nudge, recorded for the session first).
    entry_id: str | None


@dataclass(frozen=True, slots=True)
class StartInput:
    pass


@dataclass(frozen=True, slots=True)
class Control:
    """An operator's verb: `apply` feeds the core; `done` resolves once it is persisted."""

    apply: Callable[[AgentCore], Step]
    done: asyncio.Future[None] | None = None


@dataclass(frozen=True, slots=True)
class ActionEnded:
    task: asyncio.Task[Outcome]


Input = NudgeInput | StartInput | Control | ActionEnded


class AgentRunner:
    def __init__(
        self,
        core: AgentCore,
        *,
        launch: Launcher,
        model: ModelClient,
        store: Store,
        spawner: Spawner,
        reviewer: Reviewer | None = None,
        sandbox: Sandbox | None = None,
        guard: Guard | None = None,
        on_frames: FrameSink | None = None,
        on_delta: DeltaSink | None = None,
        on_fenced: Callable[[str], None] | None = None,
        autostart: bool = True,
        budget: SessionBudget | None = None,
        loaded: bool = True,
        unload_after_s: float = UNLOAD_AFTER_S,
    ) -> None:
        """`loaded=False`: `core` was made without its conversation, for an agent that
        `rests`; it is read when an input wakes the agent."""
        self.core = core
        self._launch = launch
        #: Whether a task runs the inbox; never again once it was cancelled or fenced.
        self._awake = False
        self._closed = False
        self._loaded = loaded
        self._loading = asyncio.Lock()
        self._unload_after_s = unload_after_s
        self._unload: asyncio.TimerHandle | None = None
        self._model = model
        self._store = store
        self._spawner = spawner
        self._reviewer = reviewer
        self._guard = guard
        self._workspace = Workspace(core.config.workdir, sandbox, guard=guard)
        self._on_frames = on_frames
        self._on_delta = on_delta
        self._on_fenced = on_fenced
        self._inbox: asyncio.Queue[Input] = asyncio.Queue()
        self._handling = False
        #: Set while `quiet`.
        self._quiet = asyncio.Event()
        #: A resting agent resumed after a restart has nothing to start.
        self._started = not loaded
        self._action: asyncio.Task[Outcome] | None = None
        #: Results of the running tool batch so far, for an interrupted batch.
        self._finished_tools: list[ToolResult] = []
        #: What the running model call has streamed so far: a cancelled one is costed.
        self._progress: StreamProgress | None = None
        #: The agent as of its last commit (the core runs ahead of it during a commit).
        self.summary: AgentSummary
        #: Set while the agent is done, failed or vetoed.
        self.settled = asyncio.Event()
        #: The session's budget and spend (shared by its runners), and this agent's
        #: committed share of that spend.
        self._budget = budget
        self._counted = Spend()
        self._committed()
        self._log = AgentLog(log, {"sid": core.config.session, "agent": core.config.agent})
        self._note_quiet()
        if autostart and not self._started:
            self.deliver(StartInput())

    @property
    def quiet(self) -> bool:
        """Nothing runs, waits on the inbox or is being handled: all it did is stored."""
        return self._action is None and self._inbox.empty() and not self._handling

    async def until_quiet(self) -> None:
        await self._quiet.wait()

    def _note_quiet(self) -> None:
        if self.quiet:
            self._quiet.set()
        else:
            self._quiet.clear()

    @property
    def awake(self) -> bool:
        """Whether a task runs the agent's inbox (the agent is at work)."""
        return self._awake

    @property
    def loaded(self) -> bool:
        """Whether `core` holds the agent's conversation."""
        return self._loaded

    def deliver(self, item: NudgeInput | StartInput | Control) -> None:
        self._inbox.put_nowait(item)
        self._quiet.clear()
        self._wake()

    async def messages(self) -> list[Message]:
        """The agent's conversation as committed, read from the store if not in memory."""
        if self._loaded:
            return list(self.core.messages)
        config = self.core.config
        return await self._store.load_messages(config.session, config.agent)

    async def report(self) -> str:
        """The agent's last words (`AgentCore.report`), its conversation read if need be."""
        await self._load()
        return self.core.report()

    def _wake(self) -> None:
        if self._unload is not None:
            self._unload.cancel()
            self._unload = None
        if not self._awake and not self._closed:
            self._awake = True
            self._launch(self._run())

    async def _run(self) -> None:
        """Handle inputs until the inbox is empty and no action runs."""
        try:
            await self._load()
            while self._action is not None or not self._inbox.empty():
                item = await self._inbox.get()
                self._handling = True
                try:
                    await self._handle(item)
                finally:
                    self._handling = False
                    self._note_quiet()
        except FenceError as exc:
            # Another daemon owns the session now (or the store moved on without us):
            # stop at once; whatever this agent would write next is refused anyway.
            self._closed = True
            self._log.warning("agent.fenced reason=%s", exc)
            if self._on_fenced is not None:
                self._on_fenced(self.core.config.session)
        except asyncio.CancelledError:
            self._closed = True  # the session was lost, or the daemon stops
            raise
        finally:
            self._awake = False
            if self._action is not None:
                self._action.cancel()
                await asyncio.gather(self._action, return_exceptions=True)
        if not self._closed and rests(self.core.state, self.core.pending):
            self._unload = asyncio.get_running_loop().call_later(self._unload_after_s, self._let_go)

    async def _load(self) -> None:
        """Read the conversation of an agent made without it, waiting out a Redis outage."""
        async with self._loading:
            delay = COMMIT_RETRY_MIN_S
            while not self._loaded:
                core = self.core
                try:
                    messages = await self.messages()
                except (RedisError, OSError) as exc:
                    raise_if_cancelled()
                    self._log.warning("agent.load_failed error=%s retry_in=%.2fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, COMMIT_RETRY_MAX_S)
                    continue
                self.core = AgentCore(
                    core.config,
                    core.state,
                    messages,
                    pending=core.pending,
                    seen=core.seen,
                    prices=core.prices,
                )
                self._loaded = True

    def _let_go(self) -> None:
        """Drop the conversation of an agent that rests and was not woken since."""
        self._unload = None
        core = self.core
        if self._awake or self._closed or not self.quiet or not rests(core.state, core.pending):
            return
        self.core = AgentCore(
            core.config, core.state, pending=core.pending, seen=core.seen, prices=core.prices
        )
        self._loaded = False

    async def _handle(self, item: Input) -> None:
        if self._budget is not None:
            self.core.budget = self._budget.view(self._counted)
        match item:
            case StartInput():
                if not self._started:
                    self._started = True
                    step = self.core.start()
                    if step.events or step.action is not None or self.core.unpersisted():
                        await self._apply(step)
                    # else resumed at rest, or waiting for the operator: nothing to write
            case NudgeInput(nudge, entry_id):
                acks = [entry_id] if entry_id is not None else []
                if nudge.nudge_id in self.core.seen:
                    # Recorded before (a redelivery, or a resend): it costs no commit.
                    await self._store.ack(self.core.config.session, acks)
                    return
                await self._apply(self.core.nudge_arrived(nudge), acks=acks)
            case Control(apply, done):
                try:
                    step = apply(self.core)
                except CommandError as exc:
                    _settle(done, exc)
                    return
                try:
                    await self._apply(step)
                except BaseException as exc:
                    _settle(done, exc)
                    raise
                _settle(done, None)
            case ActionEnded(task):
                await self._action_ended(task)

    async def _action_ended(self, task: asyncio.Task[Outcome]) -> None:
        if task is not self._action:
            return
        self._action = None
        if task.cancelled():
            consumed = self._progress.consumed() if self._progress is not None else None
            await self._apply(self.core.interrupted(list(self._finished_tools), consumed))
            return
        exc = task.exception()
        if isinstance(exc, ModelCallError):
            self._log.warning("agent.model_failed error=%s", exc)
            await self._apply(self.core.model_failed(str(exc), retryable=exc.retryable))
        elif exc is not None:
            raise exc
        else:
            outcome = task.result()
            if isinstance(outcome, ModelReply):
                await self._apply(self.core.model_replied(outcome))
            elif isinstance(outcome, CheckReport):
                await self._apply(self.core.checks_finished(outcome))
            elif isinstance(outcome, ReviewReport):
                await self._apply(self.core.review_finished(outcome))
            else:
                await self._apply(self.core.tools_finished(outcome))

    async def _apply(self, step: Step, *, acks: list[str] | None = None) -> None:
        """Persist the step, then start its action: the store always runs ahead of the API."""
        frames = await self._commit(step, acks or [])
        self.core.mark_persisted()
        self._committed()
        if frames and self._on_frames is not None:
            self._on_frames(frames)
        match step.action:
            case CallModel():
                withheld = self._budget.reached() if self._budget is not None else None
                if withheld is not None:
                    # Another agent's commit reached the budget while this step was
                    # written: the request is not sent.
                    await self._apply(self.core.call_withheld(withheld))
                    return
                progress = StreamProgress()
                self._start_action(self._call_model(step.action, progress))
                self._progress = progress
            case RunTools():
                self._finished_tools = []
                self._start_action(self._run_tools(step.action))
            case RunChecks(attempt, commands, timeout_s):
                self._start_action(
                    run_checks(self._workspace, commands, attempt=attempt, timeout_s=timeout_s)
                )
            case RunReview():
                if self._reviewer is None:
                    raise RuntimeError("this runner has no reviewer to run a review with")
                self._start_action(self._reviewer(self.core, step.action))
            case Interrupt():
                if self._action is not None:
                    self._action.cancel()
            case None:
                pass

    def _committed(self) -> None:
        """Publish the agent's state as persisted: its summary, and whether it settled."""
        self.summary = self.core.summary()
        if self._budget is not None:
            spent = spend_of(self.core.state)
            self._budget.add(spent - self._counted)
            self._counted = spent
        if self.core.state.status in SETTLED:
            self.settled.set()
        else:
            self.settled.clear()

    def _start_action(
        self,
        coro: Awaitable[Outcome],
    ) -> None:
        task = asyncio.ensure_future(coro)
        self._action = task
        self._quiet.clear()
        self._progress = None  # a model call sets its own
        task.add_done_callback(lambda t: self._inbox.put_nowait(ActionEnded(t)))

    async def _commit(self, step: Step, acks: list[str]) -> list[Frame]:
        """Persist the step, waiting out a Redis outage: until then it exists only here.

        A write whose reply was lost may have landed, so before writing again the runner
        asks the store whether it did (every commit bumps `state.commits`). A fenced
        refusal (`NotOwner`, `Conflict`) is not retried: the caller stops the agent.
        """
        self.core.state.commits += 1
        delay = COMMIT_RETRY_MIN_S
        while True:
            try:
                return await self._store.commit(
                    self.core.config,
                    messages=self.core.unpersisted(),
                    stored_messages=self.core.persisted_count,
                    state=self.core.state,
                    events=step.events,
                    nudges=self.core.nudge_changes(),
                    acks=acks,
                )
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                self._log.warning("agent.commit_failed error=%s retry_in=%.2fs", exc, delay)
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, COMMIT_RETRY_MAX_S)
                try:
                    if await self._store.step_landed(self.core.config, self.core.state.commits):
                        return []
                    break
                except (RedisError, OSError):
                    raise_if_cancelled()

    async def _call_model(self, action: CallModel, progress: StreamProgress) -> ModelReply:
        try:
            return await self._model.complete(action.request, self._text_sink(action), progress)
        except ModelCallError:
            raise
        except Exception as exc:
            self._log.exception("agent.model_call_crashed")
            raise ModelCallError(f"the model call failed: {exc!r}", retryable=True) from exc

    def _text_sink(self, action: CallModel) -> Callable[[str], None] | None:
        sink = self._on_delta
        if sink is None:
            return None
        config = self.core.config

        def on_text(text: str) -> None:
            sink(
                TextDelta(
                    session=config.session,
                    agent=config.agent,
                    request_no=action.request_no,
                    text=text,
                    ts=time.time(),
                )
            )

        return on_text

    async def _run_tools(self, action: RunTools) -> list[ToolResult]:
        offered = [str(spec.get("name")) for spec in self.core.config.tools]
        for call in action.calls:
            found: tuple[Finding, ...] = ()
            if call.name not in offered:
                # Only the tools the agent was given run (a reviewer's are read-only).
                outcome = ToolOutcome(
                    f"no tool {call.name!r} for this agent; it has: {', '.join(offered)}", True
                )
            elif call.name == SPAWN_TOOL:
                try:
                    outcome = await self._spawner(self.core, call)
                except (RedisError, OSError) as exc:
                    outcome = ToolOutcome(f"{SPAWN_TOOL} failed: {exc!r}", True)
            else:
                outcome, found = await self._run_guarded(call)
            self._finished_tools.append(ToolResult(call, outcome.content, outcome.is_error, found))
        return list(self._finished_tools)

    async def _run_guarded(self, call: ToolCall) -> tuple[ToolOutcome, tuple[Finding, ...]]:
        """Run a tool inside the guard: protected files are put back after it (even when
        it is cut short), and what it wrote is checked against the session's rules."""
        guard, workspace = self._guard, self._workspace
        if guard is None:
            return await run_tool(workspace, call.name, call.input), ()
        before = await guard.before(workspace, call)
        try:
            outcome = await run_tool(workspace, call.name, call.input)
        except BaseException:
            await asyncio.shield(guard.undo(workspace, before))
            raise
        return outcome, await guard.after(workspace, call, before, ok=not outcome.is_error)


class AgentLog(logging.LoggerAdapter[logging.Logger]):
    """Log lines that name their agent: `agent.commit_failed sid=s-1 agent=root error=…`.
    (Both ids are made by the daemon: nothing in them to escape.)"""

    def process(self, msg: object, kwargs: MutableMapping[str, Any]) -> tuple[object, Any]:
        extra = self.extra or {}
        name, _, rest = str(msg).partition(" ")
        ids = f"sid={extra.get('sid')} agent={extra.get('agent')}"
        return f"{name} {ids} {rest}".rstrip(), kwargs


def _settle(done: asyncio.Future[None] | None, error: BaseException | None) -> None:
    if done is None or done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
