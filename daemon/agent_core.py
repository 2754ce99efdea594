"""The session core: one agent's append-only conversation and the decision of what
happens next.

Sans-I/O. It is fed inputs (`start`, `model_replied`, `model_failed`,
`tools_finished`, `nudge_arrived`, `resume`) and answers each with a `Step`: the
events that happened and at most one action (call the model with this exact request,
or run these tools). The runner performs the action and feeds the result back; the
store persists `unpersisted()` messages and `state` after every step.

Invariants (each has a test in tests/daemon/test_agent_core.py):
- `config` (system, tools, model, betas) never changes, so every request has the same
  cacheable prefix;
- messages are only appended, so each request's messages start with the previous
  request's messages unchanged; a truncated or cancelled assistant turn is never
  appended;
- a nudge becomes a `role: "system"` message only right after a user turn (a
  tool_result turn counts) or after another such system message, never between a
  tool_use and its tool_result; an idle agent first gets a short user turn;
- models without mid-conversation system messages get the nudge as a marked
  operator note in the next user turn instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import JsonValue

from daemon.agent_state import (
    AgentConfig,
    AgentState,
    CallModel,
    InFlightNudge,
    Message,
    ModelReply,
    RunTools,
    Step,
    ToolCall,
    ToolResult,
)
from daemon.catalog import cost_usd
from protocol.events import (
    AgentFailed,
    AgentStarted,
    AgentStatusChanged,
    CacheReport,
    ModelReplied,
    ModelRequestSent,
    NudgeApplied,
    NudgeDelivered,
    NudgeReceived,
    ToolCalled,
    ToolFinished,
)
from protocol.nudges import DeliveryPath, Nudge
from protocol.sessions import AgentStatus

#: The user turn that opens a boundary for a nudge to an agent that ended its turn.
IDLE_USER_TURN = "The operator has a note for you; it follows."
#: What a tool call that was running when the daemon stopped reports to the model.
TOOL_INTERRUPTED = "interrupted: the steer daemon restarted while this tool ran; check its effects"
TOOL_PREVIEW_CHARS = 2_000


def system_note(nudge: Nudge) -> str:
    return f"Operator note from {nudge.author}: {nudge.text}"


def user_note(nudge: Nudge) -> str:
    return f"[Operator note from {nudge.author}] {nudge.text}"


class AgentCore:
    def __init__(
        self,
        config: AgentConfig,
        state: AgentState | None = None,
        messages: Sequence[Message] = (),
    ) -> None:
        self.config = config
        self.state = state if state is not None else AgentState()
        self._messages: list[Message] = list(messages)
        self._persisted = len(self._messages)
        self._busy: Literal["model", "tools"] | None = None

    # -- views ------------------------------------------------------------------

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(self._messages)

    @property
    def busy(self) -> bool:
        return self._busy is not None

    def unpersisted(self) -> list[Message]:
        return self._messages[self._persisted :]

    def mark_persisted(self) -> None:
        self._persisted = len(self._messages)

    def render_request(self) -> dict[str, JsonValue]:
        """The exact Messages API request for the conversation as it stands."""
        cfg = self.config
        request: dict[str, JsonValue] = {
            "model": cfg.model,
            "max_tokens": cfg.max_tokens,
            "system": cfg.system,
            "tools": list(cfg.tools),
            "messages": list(self._messages),
            # Automatic caching: the breakpoint moves to the last block every turn.
            "cache_control": {"type": "ephemeral"},
            "diagnostics": {"previous_message_id": self.state.last_message_id},
        }
        if cfg.betas:
            request["betas"] = list(cfg.betas)
        return request

    # -- inputs -----------------------------------------------------------------

    def start(self) -> Step:
        """Begin a new agent, or pick up a restored one where it stopped."""
        step = Step()
        if not self._messages:
            step.events.append(
                AgentStarted(
                    agent=self.config.agent,
                    parent=self.config.parent,
                    task=self.config.task,
                    model=self.config.model,
                )
            )
            self._append({"role": "user", "content": self.config.task})
            return self._call_model(step)
        if self.state.status == "idle" and self.state.pending:
            return self._go_on(step)
        if self.state.status not in ("running", "waiting"):
            return step
        calls = _tool_calls(self._messages[-1])
        if calls:
            # Tools that were running when the daemon died: never re-run them blindly.
            self._busy = "tools"
            return self.tools_finished([ToolResult(c, TOOL_INTERRUPTED, True) for c in calls])
        return self._go_on(step)

    def model_replied(self, reply: ModelReply) -> Step:
        self._expect("model")
        step = Step()
        cache = self._record_usage(reply)
        step.events.append(
            ModelReplied(
                agent=self.config.agent,
                request_no=self.state.requests,
                message_id=reply.message_id,
                stop_reason=reply.stop_reason,
                text=_text_of(reply.content),
                usage=reply.usage,
                cost_usd=self.state.cost_usd,
                cache=cache,
            )
        )
        step.events.extend(
            NudgeDelivered(
                agent=self.config.agent,
                nudge_id=n.nudge_id,
                path=n.path,
                request_no=n.request_no,
                cache=cache,
            )
            for n in self.state.in_flight
        )
        self.state.in_flight = []

        if (
            reply.stop_reason in ("max_tokens", "model_context_window_exceeded")
            or not reply.content
        ):
            # A truncated turn can hold half a tool_use: it is dropped, never appended.
            return self._fail(step, f"the reply stopped on {reply.stop_reason} and was dropped")
        self._append({"role": "assistant", "content": list(reply.content)})
        calls = _tool_calls(self._messages[-1])
        if reply.stop_reason == "tool_use" and calls:
            self._busy = "tools"
            step.events.extend(
                ToolCalled(agent=self.config.agent, call_id=c.id, name=c.name, input=c.input)
                for c in calls
            )
            step.action = RunTools(calls)
            return step
        if reply.stop_reason == "pause_turn":
            return self._call_model(step)
        if reply.stop_reason == "refusal":
            return self._fail(step, "the model refused to continue")
        return self._go_on(step)

    def model_failed(self, message: str, *, retryable: bool = True) -> Step:
        self._expect("model")
        return self._fail(Step(), message, retryable=retryable)

    def tools_finished(self, results: Iterable[ToolResult]) -> Step:
        self._expect("tools")
        step = Step()
        content: list[JsonValue] = []
        for result in results:
            block: dict[str, JsonValue] = {
                "type": "tool_result",
                "tool_use_id": result.call.id,
                "content": result.content,
            }
            if result.is_error:
                block["is_error"] = True
            content.append(block)
            step.events.append(
                ToolFinished(
                    agent=self.config.agent,
                    call_id=result.call.id,
                    name=result.call.name,
                    is_error=result.is_error,
                    output=result.content[:TOOL_PREVIEW_CHARS],
                )
            )
        nudges = self._take_pending(queue_too=False)
        if nudges and not self.config.system_messages:
            # Fallback path: the notes ride in this very user turn, after the results.
            content.extend({"type": "text", "text": user_note(n)} for n in nudges)
            self._append({"role": "user", "content": content})
            self._applied(step, nudges, "user_note")
            return self._call_model(step)
        self._append({"role": "user", "content": content})
        if nudges:
            return self._deliver_and_call(step, nudges)
        return self._call_model(step)

    def nudge_arrived(self, nudge: Nudge) -> Step:
        """Record a nudge. Returns an empty step if it was seen before (redelivery)."""
        step = Step()
        if nudge.nudge_id in self.state.seen_nudges:
            return step
        self.state.seen_nudges.append(nudge.nudge_id)
        step.events.append(NudgeReceived(agent=self.config.agent, nudge=nudge))
        if self._busy is not None or self.state.status in ("running", "waiting", "paused"):
            self.state.pending.append(nudge)
            return step
        # idle, failed or done: the agent is at a boundary, so the nudge goes in now.
        self.state.pending.append(nudge)
        return self._deliver_and_call(step, self._take_pending(queue_too=True))

    def resume(self) -> Step:
        """Retry a failed agent, or continue a paused one."""
        step = Step()
        if self._busy is not None or self.state.status not in ("failed", "paused"):
            return step
        self.state.error = None
        return self._go_on(step)

    # -- internals --------------------------------------------------------------

    def _append(self, message: Message) -> None:
        self._messages.append(message)

    def _expect(self, busy: Literal["model", "tools"]) -> None:
        if self._busy != busy:
            raise RuntimeError(f"agent {self.config.agent} is not waiting on {busy}")
        self._busy = None

    def _set_status(self, step: Step, status: AgentStatus, reason: str | None = None) -> None:
        if self.state.status != status:
            self.state.status = status
            step.events.append(
                AgentStatusChanged(agent=self.config.agent, status=status, reason=reason)
            )

    def _fail(self, step: Step, message: str, *, retryable: bool = True) -> Step:
        self.state.error = message
        step.events.append(
            AgentFailed(agent=self.config.agent, message=message, retryable=retryable)
        )
        self._set_status(step, "failed", message)
        return step

    def _take_pending(self, *, queue_too: bool) -> list[Nudge]:
        taken = [n for n in self.state.pending if queue_too or n.mode != "queue"]
        self.state.pending = [n for n in self.state.pending if n not in taken]
        return taken

    def _go_on(self, step: Step) -> Step:
        """At a boundary: deliver pending nudges (queued ones too if the turn has ended),
        then ask the model to go on; with nothing to deliver after an ended turn, idle."""
        turn_ended = self._messages[-1]["role"] == "assistant"
        nudges = self._take_pending(queue_too=turn_ended)
        if nudges:
            return self._deliver_and_call(step, nudges)
        if turn_ended:
            self._set_status(step, "idle")
            return step
        return self._call_model(step)

    def _deliver_and_call(self, step: Step, nudges: list[Nudge]) -> Step:
        """Append nudges at the current boundary, then ask the model to go on."""
        after_assistant = bool(self._messages) and self._messages[-1]["role"] == "assistant"
        if self.config.system_messages:
            if after_assistant:
                self._append({"role": "user", "content": IDLE_USER_TURN})
            for nudge in nudges:
                self._append({"role": "system", "content": system_note(nudge)})
            self._applied(step, nudges, "system_message")
        else:
            # Consecutive user turns are merged by the API, so this is "the next user turn".
            notes: list[JsonValue] = [{"type": "text", "text": user_note(n)} for n in nudges]
            self._append({"role": "user", "content": notes})
            self._applied(step, nudges, "user_note")
        return self._call_model(step)

    def _applied(self, step: Step, nudges: list[Nudge], path: DeliveryPath) -> None:
        request_no = self.state.requests + 1
        for nudge in nudges:
            self.state.in_flight.append(
                InFlightNudge(nudge_id=nudge.nudge_id, path=path, request_no=request_no)
            )
            step.events.append(
                NudgeApplied(
                    agent=self.config.agent,
                    nudge_id=nudge.nudge_id,
                    mode=nudge.mode,
                    path=path,
                    request_no=request_no,
                )
            )

    def _call_model(self, step: Step) -> Step:
        self.state.requests += 1
        self.state.error = None
        self._set_status(step, "running")
        self._busy = "model"
        step.events.append(
            ModelRequestSent(
                agent=self.config.agent,
                request_no=self.state.requests,
                messages=len(self._messages),
                nudges=[n.nudge_id for n in self.state.in_flight],
            )
        )
        step.action = CallModel(self.state.requests, self.render_request())
        return step

    def _record_usage(self, reply: ModelReply) -> CacheReport:
        usage = reply.usage
        prior = self.state.last_prompt_tokens
        prompt = usage.prompt_tokens
        write_1h = min(reply.cache_write_1h_tokens, usage.cache_creation_input_tokens)
        self.state.usage = self.state.usage + usage
        self.state.cost_usd += cost_usd(
            self.config.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_write_5m_tokens=usage.cache_creation_input_tokens - write_1h,
            cache_write_1h_tokens=write_1h,
        )
        self.state.last_message_id = reply.message_id
        self.state.last_prompt_tokens = prompt
        self.state.last_cached_share = usage.cache_read_input_tokens / prompt if prompt else None
        return CacheReport(
            prompt_tokens=prompt,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            prior_prompt_tokens=prior,
            prior_cached_share=usage.cache_read_input_tokens / prior if prior else None,
            cache_miss_reason=reply.cache_miss_reason,
        )


def _tool_calls(message: Message) -> tuple[ToolCall, ...]:
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, list):
        return ()
    calls = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            raw_input = block.get("input")
            calls.append(
                ToolCall(
                    id=str(block.get("id")),
                    name=str(block.get("name")),
                    input=raw_input if isinstance(raw_input, dict) else {},
                )
            )
    return tuple(calls)


def _text_of(content: list[dict[str, JsonValue]]) -> str:
    return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
