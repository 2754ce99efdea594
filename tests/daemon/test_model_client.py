"""The model client reads raw stream events and accumulates the reply itself; what it
returns must be what the SDK's `messages.stream()` helper (the reference, used only
here) would have made of the same stream.

Each request goes to the simulator twice, once through the reference and once through
`AnthropicModelClient`, after a warm-up call that puts both on the same cache state
(or with the cache clock moved past the TTL between them, so both write it). Blocks
the simulator never streams (thinking, redacted thinking, server tools, citations,
mid-stream errors, cut tool input) come from a small HTTP server answering with
canned SSE bodies, read by the same two paths. Every test runs on the SDK's default
httpx2 transport and on its aiohttp one (`DefaultAioHttpClient`, which the daemon uses):
a dropped connection, a broken stream and a cancelled call must end the same on both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any, cast

import anthropic
import httpx2
import pytest
from pydantic import JsonValue

from daemon.agent_state import ModelReply
from daemon.message_stream import MessageAccumulator, StreamedError, stream_events
from daemon.model_client import AnthropicModelClient, ModelCallError, StreamProgress
from protocol.sessions import Usage
from tests.fixtures.simulator import SimulatorHandle

MODEL = "claude-opus-5-5"
Request = dict[str, JsonValue]


@pytest.fixture(params=["httpx", "aiohttp"])
def http_client(request: pytest.FixtureRequest) -> httpx2.AsyncClient:
    """The SDK's HTTP client for each transport (closed with the SDK client using it)."""
    if request.param == "aiohttp":
        return anthropic.DefaultAioHttpClient()
    return anthropic.DefaultAsyncHttpxClient()


@pytest.fixture
async def anthropic_client(
    simulator: SimulatorHandle, http_client: httpx2.AsyncClient
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        api_key=simulator.api_key,
        base_url=simulator.base_url,
        max_retries=2,
        http_client=http_client,
    )
    yield client
    await client.close()


# -- The reference: the accumulation the client used before (the SDK's helper) -------


async def reference_complete(
    client: anthropic.AsyncAnthropic, request: Request
) -> tuple[ModelReply, list[str]]:
    kwargs: dict[str, Any] = dict(request)
    betas = kwargs.pop("betas", None)
    manager = (
        client.beta.messages.stream(**kwargs, betas=betas)
        if betas
        else client.messages.stream(**kwargs)
    )
    texts: list[str] = []
    async with manager as stream:
        async for event in stream:
            if event.type == "text":
                texts.append(event.text)
        final = await stream.get_final_message()
    usage = final.usage
    creation = getattr(usage, "cache_creation", None)
    diagnostics = getattr(final, "diagnostics", None)
    reason = getattr(diagnostics, "cache_miss_reason", None) if diagnostics else None
    reply = ModelReply(
        message_id=final.id,
        content=[cast(dict[str, JsonValue], block.to_dict(mode="json")) for block in final.content],
        stop_reason=final.stop_reason,
        usage=Usage(
            input_tokens=usage.input_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
        ),
        cache_write_1h_tokens=(creation.ephemeral_1h_input_tokens or 0) if creation else 0,
        cache_miss_reason=getattr(reason, "type", None),
    )
    return reply, texts


async def both(
    client: anthropic.AsyncAnthropic, request: Request
) -> tuple[ModelReply, ModelReply, list[str], list[str]]:
    """The reference's reply and texts, then the client's."""
    expected, expected_texts = await reference_complete(client, request)
    texts: list[str] = []
    got = await AnthropicModelClient(client).complete(request, texts.append)
    return expected, got, expected_texts, texts


def without_id(reply: ModelReply) -> ModelReply:
    assert reply.message_id.startswith("msg_")
    return dataclasses.replace(reply, message_id="")


def user(text: str, cache_control: dict[str, JsonValue] | None = None) -> JsonValue:
    block: dict[str, JsonValue] = {"type": "text", "text": text}
    if cache_control is not None:
        block["cache_control"] = cache_control
    return {"role": "user", "content": [block]}


def tagged(marker: str) -> str:
    """A task for the scenario `marker`, unique to this run (a cache of its own)."""
    return f"{marker} run {secrets.token_hex(6)}"


# -- The simulator's scenarios ----------------------------------------------------------


async def same_on_warm_cache(client: anthropic.AsyncAnthropic, request: Request) -> ModelReply:
    await AnthropicModelClient(client).complete(request)  # both now read what this wrote
    expected, got, expected_texts, texts = await both(client, request)
    assert without_id(got) == without_id(expected)
    assert texts == expected_texts
    return got


async def test_long_text_and_a_tool_call(anthropic_client: anthropic.AsyncAnthropic) -> None:
    request: Request = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [user(tagged("a long task"))],
    }
    reply = await same_on_warm_cache(anthropic_client, request)
    assert reply.stop_reason == "tool_use"
    assert [block["type"] for block in reply.content] == ["text", "tool_use"]
    assert len(str(reply.content[0]["text"])) > 2000


@pytest.mark.parametrize("marker", ["[scenario:approve]", "[scenario:chaos-spawn]"])
async def test_tool_inputs(anthropic_client: anthropic.AsyncAnthropic, marker: str) -> None:
    request: Request = {"model": MODEL, "max_tokens": 4096, "messages": [user(tagged(marker))]}
    reply = await same_on_warm_cache(anthropic_client, request)
    inputs = [block["input"] for block in reply.content if block["type"] == "tool_use"]
    assert inputs and any(inputs)


async def test_cut_at_max_tokens(anthropic_client: anthropic.AsyncAnthropic) -> None:
    request: Request = {"model": MODEL, "max_tokens": 40, "messages": [user(tagged("cut"))]}
    reply = await same_on_warm_cache(anthropic_client, request)
    assert reply.stop_reason == "max_tokens"


async def test_cache_reads_and_a_diagnosis(anthropic_client: anthropic.AsyncAnthropic) -> None:
    """A second turn after a nudge (a system message), reading the first turn's cache and
    diagnosing a changed system prompt, through the beta route."""
    client = AnthropicModelClient(anthropic_client)
    task = tagged("a cached task")
    first: Request = {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "You are careful.",
        "messages": [user(task)],
        "diagnostics": {"previous_message_id": None},
    }
    turn = await client.complete(first)
    tool_id = next(block["id"] for block in turn.content if block["type"] == "tool_use")
    second: Request = {
        **first,
        "system": "You are careful and quick.",
        "betas": ["mid-conversation-system-clear-at-2026-08-21"],
        "diagnostics": {"previous_message_id": turn.message_id},
        "messages": [
            user(task),
            {"role": "assistant", "content": list[JsonValue](turn.content)},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": tool_id,
                        "content": "a.txt",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            {"role": "system", "content": "Operator note: keep it short."},
        ],
    }
    reply = await same_on_warm_cache(anthropic_client, second)
    assert reply.usage.cache_read_input_tokens > 0
    assert reply.cache_miss_reason == "system_changed"
    assert str(reply.content[0]["text"]).startswith("Noted: Operator note")


async def test_one_hour_cache_writes(
    anthropic_client: anthropic.AsyncAnthropic, simulator: SimulatorHandle
) -> None:
    request: Request = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [user(tagged("an hour's cache") * 200, {"type": "ephemeral", "ttl": "1h"})],
    }
    expected, _ = await reference_complete(anthropic_client, request)
    simulator.advance_clock(2 * 3600)  # the next call writes the cache again
    got = await AnthropicModelClient(anthropic_client).complete(request)
    assert got.cache_write_1h_tokens > 0
    assert without_id(got) == without_id(expected)


async def test_progress_of_a_whole_stream(anthropic_client: anthropic.AsyncAnthropic) -> None:
    request: Request = {"model": MODEL, "max_tokens": 4096, "messages": [user(tagged("count"))]}
    progress = StreamProgress()
    reply = await AnthropicModelClient(anthropic_client).complete(request, None, progress)
    consumed = progress.consumed()
    assert consumed is not None
    assert consumed.usage.input_tokens == reply.usage.input_tokens
    streamed = sum(
        len(str(block["text"])) if block["type"] == "text" else len(json.dumps(block["input"]))
        for block in reply.content
    )
    assert consumed.usage.output_tokens == -(-streamed // 4)


async def reference_error(client: anthropic.AsyncAnthropic, request: Request) -> tuple[str, bool]:
    """How the client used to describe a failed call (message, retryable)."""
    try:
        await reference_complete(client, request)
    except anthropic.APIStatusError as exc:
        body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
        error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else body
        kind, message = error.get("type", "error"), error.get("message", exc.message)
        retryable = exc.status_code in (200, 408, 409, 429) or exc.status_code >= 500
        return f"model API error {exc.status_code} {kind}: {message}", retryable
    except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
        return f"cannot reach the model API: {exc!r}", True
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize("fault", ["rate_limit", "overloaded", "midstream_error", "drop"])
async def test_failures_are_described_as_before(
    anthropic_client: anthropic.AsyncAnthropic, simulator: SimulatorHandle, fault: str
) -> None:
    client = anthropic_client.with_options(max_retries=0)
    request: Request = {"model": MODEL, "max_tokens": 4096, "messages": [user(tagged("fail"))]}
    simulator.fault(fault, retry_after=0)
    expected = await reference_error(client, request)
    simulator.fault(fault, retry_after=0)
    with pytest.raises(ModelCallError) as error:
        await AnthropicModelClient(client).complete(request)
    assert (str(error.value), error.value.retryable) == expected


# -- Canned streams: what the simulator never sends ---------------------------------------


def sse(*events: dict[str, Any], line_end: str = "\n") -> bytes:
    frames = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]
    return "".join(frames).replace("\n", line_end).encode()


def message_start(**usage: Any) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01canned",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1, **usage},
            "diagnostics": {
                "cache_miss_reason": {"type": "messages_changed", "cache_missed_input_tokens": 40}
            },
        },
    }


def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, **usage: Any) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


MESSAGE_STOP = {"type": "message_stop"}
PING = {"type": "ping"}
CITATION = {
    "type": "char_location",
    "cited_text": "steer",
    "document_index": 0,
    "document_title": "README",
    "start_char_index": 0,
    "end_char_index": 5,
}
EVERY_KIND = sse(
    message_start(
        cache_creation_input_tokens=300,
        cache_read_input_tokens=900,
        cache_creation={"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    ),
    start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    PING,
    delta(0, type="thinking_delta", thinking="Let me "),
    delta(0, type="thinking_delta", thinking="think."),
    delta(0, type="signature_delta", signature="c2lnbmF0dXJl"),
    stop(0),
    start(1, {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}),
    stop(1),
    start(2, {"type": "text", "text": "", "citations": None}),
    delta(2, type="text_delta", text="Per the "),
    delta(2, type="citations_delta", citation=CITATION),
    delta(2, type="text_delta", text="README: ünïcode ✓"),
    delta(2, type="citations_delta", citation={**CITATION, "start_char_index": 1}),
    stop(2),
    start(3, {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}),
    delta(3, type="input_json_delta", partial_json='{"query": "st'),
    delta(3, type="input_json_delta", partial_json='eer"}'),
    stop(3),
    start(
        4,
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_01",
            "content": [
                {
                    "type": "web_search_result",
                    "url": "https://example.com",
                    "title": "Example",
                    "encrypted_content": "ZW5j",
                    "page_age": None,
                }
            ],
        },
    ),
    stop(4),
    start(5, {"type": "tool_use", "id": "toolu_01", "name": "write_file", "input": {}}),
    delta(5, type="input_json_delta", partial_json=""),
    delta(5, type="input_json_delta", partial_json='{"path": "a.txt", "n": [1.5e3, '),
    delta(
        5,
        type="input_json_delta",
        partial_json='null, true, 12345678901234567890], "s": "\\u00e9\\n"}',
    ),
    stop(5),
    start(6, {"type": "tool_use", "id": "toolu_02", "name": "list_files", "input": {}}),
    delta(6, type="input_json_delta", partial_json=""),
    stop(6),
    message_delta("tool_use", output_tokens=77, input_tokens=15, cache_read_input_tokens=950),
    MESSAGE_STOP,
)
CUT_TOOL_INPUT = sse(
    message_start(),
    start(0, {"type": "tool_use", "id": "toolu_01", "name": "write_file", "input": {}}),
    delta(0, type="input_json_delta", partial_json='{"path": "a.txt", "content": "half a'),
    stop(0),
    message_delta("max_tokens", output_tokens=9),
    MESSAGE_STOP,
)
MID_STREAM_ERROR = sse(message_start(), start(0, {"type": "text", "text": ""})) + (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
    b'"message":"Overloaded"}}\n\n'
)


class CannedServer:
    """A loopback HTTP server answering every request with `body` as an event stream,
    `chunk` bytes per write; with `hold`, it keeps the connection open after the body
    and sets `hung_up` when the client closes it."""

    def __init__(self, body: bytes, *, chunk: int = 1 << 16, hold: bool = False) -> None:
        self.body, self.chunk, self.hold = body, chunk, hold
        self.hung_up = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"connection: close\r\n\r\n")
        for offset in range(0, len(self.body), self.chunk):
            writer.write(self.body[offset : offset + self.chunk])
            await writer.drain()
        if self.hold:
            await reader.read()  # b"" once the client has closed the connection
            self.hung_up.set()
        writer.close()


@pytest.fixture
async def canned_client(
    http_client: httpx2.AsyncClient,
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        api_key="canned", base_url="http://unused", max_retries=0, http_client=http_client
    )
    yield client
    await client.close()


def on(client: anthropic.AsyncAnthropic, base_url: str) -> anthropic.AsyncAnthropic:
    return client.with_options(base_url=base_url)


CANNED_REQUEST: Request = {"model": MODEL, "max_tokens": 1024, "messages": [user("hi")]}


@pytest.mark.parametrize(("line_end", "chunk"), [("\n", 1 << 16), ("\r\n", 7)])
async def test_every_kind_of_block(
    canned_client: anthropic.AsyncAnthropic, line_end: str, chunk: int
) -> None:
    body = EVERY_KIND.replace(b"\n", line_end.encode())
    async with CannedServer(body, chunk=chunk) as base_url:
        expected, got, expected_texts, texts = await both(
            on(canned_client, base_url), CANNED_REQUEST
        )
    assert got == expected
    assert texts == expected_texts == ["Per the ", "README: ünïcode ✓"]
    assert got.cache_write_1h_tokens == 200
    assert got.usage == Usage(
        input_tokens=15,
        cache_creation_input_tokens=300,
        cache_read_input_tokens=950,
        output_tokens=77,
    )
    assert got.cache_miss_reason == "messages_changed"
    assert got.content[6]["input"] == {}


async def test_tool_input_cut_off(canned_client: anthropic.AsyncAnthropic) -> None:
    async with CannedServer(CUT_TOOL_INPUT) as base_url:
        expected, got, _, _ = await both(on(canned_client, base_url), CANNED_REQUEST)
    assert got == expected
    assert got.content[0]["input"] == {"path": "a.txt"}


async def test_an_error_event_mid_stream(canned_client: anthropic.AsyncAnthropic) -> None:
    async with CannedServer(MID_STREAM_ERROR) as base_url:
        client = on(canned_client, base_url)
        with pytest.raises(anthropic.APIStatusError) as sdk_error:
            await reference_complete(client, CANNED_REQUEST)
        progress = StreamProgress()
        with pytest.raises(ModelCallError) as error:
            await AnthropicModelClient(client).complete(CANNED_REQUEST, None, progress)
    assert sdk_error.value.status_code == 200
    assert str(error.value) == "model API error 200 overloaded_error: Overloaded"
    assert error.value.retryable
    assert progress.consumed() is not None  # message_start's usage is kept


async def test_a_stream_that_ends_before_message_stop(
    canned_client: anthropic.AsyncAnthropic,
) -> None:
    """The SDK's helper would return the half message; the client calls it a broken
    stream, to be retried."""
    cut = sse(
        message_start(),
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hal"),
    )
    async with CannedServer(cut) as base_url:
        with pytest.raises(ModelCallError, match="before message_stop") as error:
            await AnthropicModelClient(on(canned_client, base_url)).complete(CANNED_REQUEST)
    assert error.value.retryable


async def test_cancelling_closes_the_connection(canned_client: anthropic.AsyncAnthropic) -> None:
    partial = sse(
        message_start(),
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hel"),
    )
    server = CannedServer(partial, hold=True)
    async with server as base_url:
        first_text = asyncio.Event()
        progress = StreamProgress()
        call = asyncio.create_task(
            AnthropicModelClient(on(canned_client, base_url)).complete(
                CANNED_REQUEST, lambda _: first_text.set(), progress
            )
        )
        await first_text.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(server.hung_up.wait(), 10)
    consumed = progress.consumed()
    assert consumed is not None and consumed.usage.output_tokens == 1


# -- The event reader on its own ----------------------------------------------------------


async def pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(body), size):
        yield body[offset : offset + size]


async def test_events_cut_anywhere_read_the_same() -> None:
    body = b": a comment\n\n" + EVERY_KIND.replace(b"\n", b"\r\n") + b"event: ping\ndata: {}\n\n"
    whole = [event async for event in stream_events(pieces(body, len(body)))]
    for size in (1, 2, 3, 5, 64):
        assert [event async for event in stream_events(pieces(body, size))] == whole
    assert PING not in whole and len(whole) == EVERY_KIND.count(b"event: ") - 1


async def test_an_error_event_that_is_not_json() -> None:
    with pytest.raises(StreamedError) as error:
        [event async for event in stream_events(pieces(b"event: error\ndata: boom\n\n", 4))]
    assert error.value.body == "boom"


def test_a_delta_before_message_start_is_refused() -> None:
    with pytest.raises(Exception, match="before message_start"):
        MessageAccumulator().add(stop(0))
