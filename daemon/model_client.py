"""The model seam: a small protocol the agent runner depends on, and its
implementation on the official `anthropic` SDK (AsyncAnthropic, streaming).

The request goes out through the SDK (`create(stream=True)` as a streaming response:
its retries, headers, status errors) and the SSE body is read raw and accumulated by
`daemon.message_stream`, which costs a few µs per event where the SDK's typed events
and `messages.stream()` snapshots cost tens. Retries are the SDK's (`max_retries`);
what still fails, or an `error` event mid-stream, becomes a `ModelCallError` the core
turns into a visible, resumable `failed` state. Cancelling `complete` closes the HTTP
stream (the response's context manager does); what the request consumed until then is
in its `StreamProgress`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import JsonValue

from daemon.agent_state import ModelReply, PartialUsage
from daemon.message_stream import IncompleteStream, MessageAccumulator, StreamedError, stream_events
from protocol.sessions import Usage

if TYPE_CHECKING:  # imported where called: the daemon serves before the SDK is loaded
    import anthropic

TextSink = Callable[[str], None]
#: Characters per output token when estimating a cut stream's output (the usual rule
#: for English text on the API's tokenizer; the simulator streams exactly 4).
CHARS_PER_TOKEN = 4
#: The beta under which the SDK keeps a tool input's cut-off last string.
_FINE_GRAINED_TOOL_STREAMING = "fine-grained-tool-streaming-2025-05-14"


@dataclass(slots=True)
class StreamProgress:
    """What a streaming request had reported when it ended, read off its stream:
    `message_start`'s usage (input and cache figures are final there) and the output
    characters streamed since. The final output count comes only with `message_delta`,
    at the end, so a cancelled stream's output is estimated from the characters it
    streamed."""

    stream: MessageAccumulator | None = None

    def consumed(self) -> PartialUsage | None:
        """The usage so far: None before `message_start`; the output is the streamed
        characters over `CHARS_PER_TOKEN`, rounded up (at least what message_start said)."""
        stream = self.stream
        if stream is None or stream.started_usage is None:
            return None
        started = stream.started_usage
        usage = _usage_of(started)
        streamed = math.ceil(stream.streamed_chars / CHARS_PER_TOKEN)
        output = max(usage.output_tokens, streamed)
        return PartialUsage(
            usage=usage.model_copy(update={"output_tokens": output}),
            cache_write_1h_tokens=_cache_write_1h(started),
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
        import anthropic  # loaded by now (`daemon.lazy_model`); here a dict lookup
        import httpx2

        kwargs: dict[str, Any] = dict(request)
        betas = kwargs.pop("betas", None)
        message = MessageAccumulator(
            trailing_strings=bool(betas) and _FINE_GRAINED_TOOL_STREAMING in betas
        )
        if progress is not None:
            progress.stream = message
        try:
            # The status errors (after the SDK's retries) are raised on entering.
            opened = (
                self._client.beta.messages.with_streaming_response.create(
                    **kwargs, betas=betas, stream=True
                )
                if betas
                else self._client.messages.with_streaming_response.create(**kwargs, stream=True)
            )
            async with opened as response:
                async for event in stream_events(response.iter_bytes()):
                    text = message.add(event)
                    if text is not None and on_text is not None:
                        on_text(text)
            final = message.final()
        except anthropic.APIStatusError as exc:
            retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            raise ModelCallError(
                _describe(exc.status_code, exc.body, exc.message), retryable=retryable
            ) from exc
        except StreamedError as exc:
            # As the SDK would raise it: a status error with the 200 the stream began with.
            raise ModelCallError(_describe(200, exc.body, str(exc)), retryable=True) from exc
        except IncompleteStream as exc:
            raise ModelCallError(f"the model stream broke off: {exc}", retryable=True) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            # A connection dropped mid-stream surfaces as the SDK's raw transport error.
            raise ModelCallError(f"cannot reach the model API: {exc!r}", retryable=True) from exc
        return _reply_of(final)


def _describe(status: int, body: object, fallback: str) -> str:
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    message = error.get("message", fallback) if isinstance(error, dict) else fallback
    return f"model API error {status} {kind}: {message}"


def _reply_of(message: dict[str, Any]) -> ModelReply:
    usage = message["usage"]
    reason = (message.get("diagnostics") or {}).get("cache_miss_reason") or {}
    return ModelReply(
        message_id=message["id"],
        content=message["content"],
        stop_reason=message.get("stop_reason"),
        usage=_usage_of(usage),
        cache_write_1h_tokens=_cache_write_1h(usage),
        cache_miss_reason=reason.get("type"),
    )


def _usage_of(usage: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        cache_creation_input_tokens=usage.get("cache_creation_input_tokens") or 0,
        cache_read_input_tokens=usage.get("cache_read_input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
    )


def _cache_write_1h(usage: dict[str, Any]) -> int:
    creation = usage.get("cache_creation") or {}
    return int(creation.get("ephemeral_1h_input_tokens") or 0)
