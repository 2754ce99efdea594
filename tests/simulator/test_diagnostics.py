"""Cache diagnostics through the real SDK (notes §2)."""

from __future__ import annotations

import anthropic
from anthropic.types import Message

from tests.simulator.support import (
    LOOP_TASK,
    MODEL,
    Json,
    answer_tools,
    as_assistant,
    create,
    prompt_tokens,
    system_prompt,
)


async def ask(
    client: anthropic.AsyncAnthropic,
    messages: list[Json],
    *,
    system: str | list[Json],
    previous: str | None,
    **extra: Json | list[Json],
) -> Message:
    return await create(
        client,
        model=MODEL,
        max_tokens=4000,
        system=system,
        messages=messages,
        cache_control={"type": "ephemeral"},
        diagnostics={"previous_message_id": previous},
        **extra,
    )


def reason(message: Message) -> Json | None:
    if message.diagnostics is None:
        return None
    miss = message.diagnostics.cache_miss_reason
    return None if miss is None else miss.model_dump()


async def test_diagnostics_follow_the_conversation(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    system = system_prompt()
    messages: list[Json] = [{"role": "user", "content": LOOP_TASK}]
    first = await ask(anthropic_client, messages, system=system, previous=None)
    assert first.diagnostics is None

    messages += [as_assistant(first), answer_tools(first), {"role": "system", "content": "note"}]
    second = await ask(anthropic_client, messages, system=system, previous=first.id)
    assert second.diagnostics is None  # only appended: no divergence
    assert second.usage.cache_read_input_tokens

    unknown = await ask(anthropic_client, messages, system=system, previous="msg_01unknown")
    assert reason(unknown) == {"type": "previous_message_not_found"}

    changed_system = await ask(anthropic_client, messages, system=system + "!", previous=second.id)
    missed = reason(changed_system)
    assert missed is not None and missed["type"] == "system_changed"
    assert missed["cache_missed_input_tokens"] == prompt_tokens(second.usage)

    edited = [{"role": "user", "content": LOOP_TASK + " (edited)"}, *messages[1:]]
    changed_messages = await ask(anthropic_client, edited, system=system, previous=second.id)
    missed = reason(changed_messages)
    assert missed is not None and missed["type"] == "messages_changed"
    # Everything after the system prompt was missed.
    assert 0 < missed["cache_missed_input_tokens"] < prompt_tokens(second.usage)


async def test_tools_and_settings_changes(anthropic_client: anthropic.AsyncAnthropic) -> None:
    # A breakpoint on the system prompt as well as the automatic one at the end.
    system: list[Json] = [
        {"type": "text", "text": system_prompt(), "cache_control": {"type": "ephemeral"}}
    ]
    tool: Json = {"name": "run_command", "input_schema": {"type": "object", "properties": {}}}
    messages: list[Json] = [{"role": "user", "content": LOOP_TASK}]
    first = await ask(anthropic_client, messages, system=system, previous=None, tools=[tool])

    other_tool = {**tool, "description": "runs a command"}
    tools_changed = await ask(
        anthropic_client, messages, system=system, previous=first.id, tools=[other_tool]
    )
    assert reason(tools_changed) == {
        "type": "tools_changed",
        "cache_missed_input_tokens": prompt_tokens(first.usage),
    }
    assert tools_changed.usage.cache_read_input_tokens == 0

    choice_changed = await ask(
        anthropic_client,
        messages,
        system=system,
        previous=first.id,
        tools=[tool],
        tool_choice={"type": "any"},
    )
    assert reason(choice_changed) == {"type": "unavailable"}
    # tool_choice shapes the messages part of the prompt: tools and system still hit.
    assert 0 < (choice_changed.usage.cache_read_input_tokens or 0) < prompt_tokens(first.usage)


async def test_streaming_puts_diagnostics_on_message_start(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    async with anthropic_client.messages.stream(
        model=MODEL,
        max_tokens=4000,
        messages=[{"role": "user", "content": LOOP_TASK}],
        diagnostics={"previous_message_id": "msg_01gone"},
    ) as stream:
        async for event in stream:
            if event.type == "message_start":
                assert event.message.diagnostics is not None
                miss = event.message.diagnostics.cache_miss_reason
                assert miss is not None and miss.type == "previous_message_not_found"
        final = await stream.get_final_message()
    assert final.diagnostics is not None
