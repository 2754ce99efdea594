"""The agent runner: one asyncio task per agent, driving its `AgentCore`.

Everything that happens to an agent (a model reply, finished tools, a nudge, a
resume) becomes one input on its inbox, handled strictly one at a time: feed the
core, persist the step (messages, state, events and any nudge ack in one MULTI),
then start the step's action. The action runs as its own task and posts its result
back to the inbox, so a nudge is recorded while a model call is still streaming.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from daemon.agent_core import AgentCore
from daemon.agent_state import CallModel, ModelReply, RunTools, Step, ToolResult
from daemon.model_client import ModelCallError, ModelClient
from daemon.store import Store
from daemon.tools import Workspace, run_tool
from protocol.envelope import Frame
from protocol.nudges import Nudge

log = logging.getLogger("steer.runner")

COMMIT_RETRY_MIN_S = 0.05
COMMIT_RETRY_MAX_S = 2.0

FrameSink = Callable[[list[Frame]], None]


@dataclass(frozen=True, slots=True)
class NudgeInput:
    nudge: Nudge
    entry_id: str


@dataclass(frozen=True, slots=True)
class ModelDone:
    reply: ModelReply


@dataclass(frozen=True, slots=True)
class ModelFailed:
    error: ModelCallError


@dataclass(frozen=True, slots=True)
class ToolsDone:
    results: list[ToolResult]


@dataclass(frozen=True, slots=True)
class ResumeInput:
    pass


Input = NudgeInput | ModelDone | ModelFailed | ToolsDone | ResumeInput


class AgentRunner:
    def __init__(
        self,
        core: AgentCore,
        *,
        model: ModelClient,
        store: Store,
        on_frames: FrameSink | None = None,
    ) -> None:
        self.core = core
        self._model = model
        self._store = store
        self._workspace = Workspace(core.config.workdir)
        self._on_frames = on_frames
        self._inbox: asyncio.Queue[Input] = asyncio.Queue()
        self._action: asyncio.Task[None] | None = None
        self._log = logging.LoggerAdapter(
            log, {"session": core.config.session, "agent": core.config.agent}
        )

    def deliver(self, item: NudgeInput | ResumeInput) -> None:
        self._inbox.put_nowait(item)

    async def run(self) -> None:
        try:
            await self._apply(self.core.start(), acks=[])
            while True:
                item = await self._inbox.get()
                await self._handle(item)
        finally:
            if self._action is not None:
                self._action.cancel()
                await asyncio.gather(self._action, return_exceptions=True)

    async def _handle(self, item: Input) -> None:
        match item:
            case NudgeInput(nudge, entry_id):
                await self._apply(self.core.nudge_arrived(nudge), acks=[entry_id])
            case ModelDone(reply):
                await self._apply(self.core.model_replied(reply), acks=[])
            case ModelFailed(error):
                self._log.warning("agent.model_failed error=%s", error)
                step = self.core.model_failed(str(error), retryable=error.retryable)
                await self._apply(step, acks=[])
            case ToolsDone(results):
                await self._apply(self.core.tools_finished(results), acks=[])
            case ResumeInput():
                await self._apply(self.core.resume(), acks=[])

    async def _apply(self, step: Step, *, acks: list[str]) -> None:
        """Persist the step, then start its action: the store always runs ahead of the API."""
        frames = await self._commit(step, acks)
        self.core.mark_persisted()
        if frames and self._on_frames is not None:
            self._on_frames(frames)
        match step.action:
            case CallModel():
                self._action = asyncio.create_task(self._call_model(step.action))
            case RunTools():
                self._action = asyncio.create_task(self._run_tools(step.action))
            case None:
                pass

    async def _commit(self, step: Step, acks: list[str]) -> list[Frame]:
        """Persist the step, waiting out a Redis outage: until then it exists only here."""
        self.core.state.commits += 1
        delay = COMMIT_RETRY_MIN_S
        while True:
            try:
                return await self._store.commit(
                    self.core.config,
                    messages=self.core.unpersisted(),
                    state=self.core.state,
                    events=step.events,
                    acks=acks,
                )
            except (RedisError, OSError) as exc:
                if cancelling():
                    raise
                self._log.warning("agent.commit_failed error=%s retry_in=%.2fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, COMMIT_RETRY_MAX_S)
            try:
                if await self._store.step_landed(self.core.config, self.core.state.commits):
                    return []
            except (RedisError, OSError):
                if cancelling():
                    raise

    async def _call_model(self, action: CallModel) -> None:
        try:
            reply = await self._model.complete(action.request)
        except ModelCallError as exc:
            self._inbox.put_nowait(ModelFailed(exc))
        else:
            self._inbox.put_nowait(ModelDone(reply))

    async def _run_tools(self, action: RunTools) -> None:
        results = []
        for call in action.calls:
            outcome = await run_tool(self._workspace, call.name, call.input)
            results.append(ToolResult(call, outcome.content, outcome.is_error))
        self._inbox.put_nowait(ToolsDone(results))


def cancelling() -> bool:
    # redis-py can report a cancelled command as a ConnectionError: never retry those.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
