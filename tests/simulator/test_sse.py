"""Streaming: the SSE wire format, the SDK's view of it, pacing and disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import anthropic
import httpx
import pytest

from daemon.simulator import SimulatorConfig
from tests.fixtures.simulator import SimulatorHandle
from tests.simulator.support import MODEL, embedded

DEMO_TASK = "Add a --verbose flag to greet."


async def test_sdk_stream_gives_text_and_a_parsed_tool_call(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    texts: list[str] = []
    async with anthropic_client.messages.stream(
        model=MODEL, max_tokens=4000, messages=[{"role": "user", "content": DEMO_TASK}]
    ) as stream:
        async for event in stream:
            if event.type == "text":
                texts.append(event.text)
        final = await stream.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]
    text, call = final.content
    assert text.type == "text" and text.text == "".join(texts) and len(texts) > 1
    assert call.type == "tool_use" and call.name == "list_files" and call.input == {}
    assert call.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 1


async def test_raw_events_come_in_the_documented_order(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    events = await anthropic_client.messages.create(
        model=MODEL,
        max_tokens=4000,
        messages=[{"role": "user", "content": DEMO_TASK}],
        stream=True,
    )
    seen = [event async for event in events]
    kinds = [event.type for event in seen]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    start, delta = seen[0], seen[-2]
    assert start.type == "message_start" and start.message.stop_reason is None
    assert start.message.usage.cache_read_input_tokens == 0
    assert delta.type == "message_delta" and delta.delta.stop_reason == "tool_use"
    json_parts = [
        event.delta.partial_json
        for event in seen
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
    ]
    assert json_parts[0] == "" and json.loads("".join(json_parts)) == {}


def test_every_frame_has_an_event_line(simulator: SimulatorHandle) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 4000,
        "stream": True,
        "messages": [{"role": "user", "content": DEMO_TASK}],
    }
    response = httpx.post(
        f"{simulator.base_url}/v1/messages", json=body, headers={"x-api-key": simulator.api_key}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    frames = [f for f in response.text.split("\n\n") if f]
    kinds = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        kind = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == kind
        kinds.append(kind)
    assert "ping" in kinds
    usage = json.loads(frames[-2].split("\n")[1].removeprefix("data: "))["usage"]
    assert usage["output_tokens"] > 1 and "input_tokens" in usage


async def test_token_rate_paces_the_text() -> None:
    rate = 2000.0
    async with embedded(SimulatorConfig(token_rate=rate)) as sim:
        started = time.monotonic()
        deltas = 0
        async with sim.client.messages.stream(
            model=MODEL, max_tokens=4000, messages=[{"role": "user", "content": DEMO_TASK}]
        ) as stream:
            async for event in stream:
                deltas += event.type == "text"
            final = await stream.get_final_message()
        elapsed = time.monotonic() - started
    text = final.content[0]
    assert text.type == "text"
    tokens = -(-len(text.text) // 4)
    assert elapsed >= (tokens - 1) / rate
    assert deltas > 10


async def test_a_client_that_goes_away_leaves_no_errors_or_tasks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with embedded(SimulatorConfig(token_rate=20)) as sim:
        async with sim.client.messages.stream(
            model=MODEL, max_tokens=4000, messages=[{"role": "user", "content": DEMO_TASK}]
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    break  # leaving the block closes the connection mid-stream
        after = await sim.client.messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "still there?"}]
        )
        assert after.stop_reason == "max_tokens"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
