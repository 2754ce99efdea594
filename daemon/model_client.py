"""The model seam: a small protocol the agent runner depends on, and its
implementation on the official `anthropic` SDK (AsyncAnthropic, streaming).

Retries are the SDK's (`max_retries`); what still fails becomes a `ModelCallError`
the core turns into a visible, resumable `failed` state. Cancelling `complete`
closes the HTTP stream (the SDK does that when its context manager exits); what
the request consumed until then is in its `StreamProgress`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import httpx2
from pydantic import JsonValue

from daemon.agent_state import ModelReply, PartialUsage
from protocol.sessions import Usage

TextSink = Callable[[str], None]
#: Characters per output token when estimating a cut stream's output (the usual rule
#: for English text on the API's tokenizer; the simulator streams exactly 4).
CHARS_PER_TOKEN = 4
#: Which field of each content_block_delta carries streamed output.
_DELTA_TEXT = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
}


@dataclass(slots=True)
class StreamProgress:
    """What a streaming request had reported when it ended: `message_start`'s usage
    (input and cache figures are final there) and the output characters streamed
    since. The final output count comes only with `message_delta`, at the end, so a
    cancelled stream's output is estimated from the characters it streamed."""

    started: PartialUsage | None = None
    streamed_chars: int = 0

    def on_event(self, event: Any) -> None:
        if event.type == "message_start":
            usage = event.message.usage
            creation = getattr(usage, "cache_creation", None)
            self.started = PartialUsage(
                usage=_usage_of(usage),
                cache_write_1h_tokens=(creation.ephemeral_1h_input_tokens or 0) if creation else 0,
            )
        elif event.type == "content_block_delta":
            field = _DELTA_TEXT.get(event.delta.type)
            if field is not None:
                self.streamed_chars += len(getattr(event.delta, field, "") or "")

    def consumed(self) -> PartialUsage | None:
        """The usage so far: None before `message_start`; the output is the streamed
        characters over `CHARS_PER_TOKEN`, rounded up (at least what message_start said)."""
        if self.started is None:
            return None
        usage = self.started.usage
        streamed = math.ceil(self.streamed_chars / CHARS_PER_TOKEN)
        output = max(usage.output_tokens, streamed)
        return PartialUsage(
            usage=usage.model_copy(update={"output_tokens": output}),
            cache_write_1h_tokens=self.started.cache_write_1h_tokens,
        )


class ModelCallError(Exception):
    """A model request that failed after the SDK's own retries."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class ModelClient(Protocol):
    async def complete(
        self,
        request: dict[str, JsonValue],
        on_text: TextSink | None = None,
        progress: StreamProgress | None = None,
    ) -> ModelReply: ...


class AnthropicModelClient:
    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self._client = client

    async def close(self) -> None:
        await self._client.close()

    async def complete(
        self,
        request: dict[str, JsonValue],
        on_text: TextSink | None = None,
        progress: StreamProgress | None = None,
    ) -> ModelReply:
        kwargs: dict[str, Any] = dict(request)
        betas = kwargs.pop("betas", None)
        try:
            manager = (
                self._client.beta.messages.stream(**kwargs, betas=betas)
                if betas
                else self._client.messages.stream(**kwargs)
            )
            async with manager as stream:
                async for event in stream:
                    if progress is not None:
                        progress.on_event(event)
                    if on_text is not None and event.type == "text":
                        on_text(event.text)
                final = await stream.get_final_message()
        except anthropic.APIStatusError as exc:
            retryable = exc.status_code in (200, 408, 409, 429) or exc.status_code >= 500
            raise ModelCallError(_describe(exc), retryable=retryable) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            # A connection dropped mid-stream surfaces as the SDK's raw transport error.
            raise ModelCallError(f"cannot reach the model API: {exc!r}", retryable=True) from exc
        return _reply_of(final)


def _describe(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    message = error.get("message", exc.message) if isinstance(error, dict) else exc.message
    return f"model API error {exc.status_code} {kind}: {message}"


def _reply_of(message: Any) -> ModelReply:
    usage = message.usage
    creation = getattr(usage, "cache_creation", None)
    diagnostics = getattr(message, "diagnostics", None)
    reason = getattr(diagnostics, "cache_miss_reason", None) if diagnostics else None
    return ModelReply(
        message_id=message.id,
        content=[block.to_dict(mode="json") for block in message.content],
        stop_reason=message.stop_reason,
        usage=_usage_of(usage),
        cache_write_1h_tokens=(creation.ephemeral_1h_input_tokens or 0) if creation else 0,
        cache_miss_reason=getattr(reason, "type", None),
    )


def _usage_of(usage: Any) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens or 0,
        cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
    )
