"""Shared helpers for the simulator tests: conversation building and an embedded server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
from anthropic.types import Message, Usage

from daemon.simulator import SimulatorConfig, SimulatorServer

MODEL = "claude-opus-5-5"
LOOP_TASK = "[scenario:loop] keep checking"

#: Request parts as plain JSON: tests send shapes (misplaced or malformed messages)
#: that the SDK's TypedDicts rightly reject, so they go in untyped.
Json = dict[str, Any]


async def create(client: anthropic.AsyncAnthropic, **params: Any) -> Message:
    """``client.messages.create`` with plain JSON parameters."""
    reply: Message = await client.messages.create(**params)
    return reply


async def streamed(client: anthropic.AsyncAnthropic, **params: Any) -> Message:
    """The final message of ``client.messages.stream`` with plain JSON parameters."""
    async with client.messages.stream(**params) as events:
        return await events.get_final_message()


def system_prompt(tag: str = "") -> str:
    """A top-level system prompt well over every model's cache minimum, unique per call.

    The unique tag keeps each test's cache entries apart on the shared simulator.
    """
    tag = tag or uuid.uuid4().hex
    rules = " ".join(f"Rule {i}: work carefully and check every result." for i in range(120))
    return f"You are a test agent ({tag}). {rules}"


def answer_tools(message: Message, text: str = "ok") -> Json:
    """The user turn answering every tool_use of ``message``."""
    results = [
        {"type": "tool_result", "tool_use_id": block.id, "content": text}
        for block in message.content
        if block.type == "tool_use"
    ]
    return {"role": "user", "content": results}


def as_assistant(message: Message) -> Json:
    """``message`` as history, sent back verbatim."""
    return {"role": "assistant", "content": [block.to_dict() for block in message.content]}


def prompt_tokens(usage: Usage) -> int:
    return (
        usage.input_tokens
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )


@dataclass
class Embedded:
    server: SimulatorServer
    client: anthropic.AsyncAnthropic
    control: httpx.AsyncClient


@asynccontextmanager
async def embedded(config: SimulatorConfig) -> AsyncIterator[Embedded]:
    """A simulator in the test's own event loop, with an SDK client and a control client."""
    key = config.api_key or "any-key"
    server = SimulatorServer(config)
    await server.start()
    client = anthropic.AsyncAnthropic(api_key=key, base_url=server.base_url, max_retries=0)
    control = httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": key})
    try:
        yield Embedded(server, client, control)
    finally:
        await control.aclose()
        await client.close()
        await server.stop()
