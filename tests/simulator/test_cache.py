"""The prompt-cache model through the real SDK: appends hit, prefix edits miss."""

from __future__ import annotations

import anthropic
from anthropic.types import Message

from daemon.simulator import SimulatorConfig
from tests.simulator.support import (
    LOOP_TASK,
    MODEL,
    Json,
    answer_tools,
    as_assistant,
    create,
    embedded,
    prompt_tokens,
    streamed,
    system_prompt,
)

AUTO: Json = {"type": "ephemeral"}


async def ask(
    client: anthropic.AsyncAnthropic,
    messages: list[Json],
    system: str | list[Json],
    *,
    model: str = MODEL,
    stream: bool = False,
    cache_control: Json | None = AUTO,
) -> Message:
    params: Json = {"model": model, "max_tokens": 4000, "system": system, "messages": messages}
    if cache_control is not None:
        params["cache_control"] = cache_control
    return await (streamed if stream else create)(client, **params)


def task() -> list[Json]:
    return [{"role": "user", "content": LOOP_TASK}]


async def test_appending_reads_the_whole_previous_prompt(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    """The property nudges rely on: history + reply + tool_result (+ a system message)."""
    system = system_prompt()
    messages = task()
    previous: Message | None = None
    for request_no in range(20):
        reply = await ask(anthropic_client, messages, system, stream=request_no % 2 == 1)
        usage = reply.usage
        if previous is None:
            assert usage.cache_read_input_tokens == 0
            assert usage.cache_creation_input_tokens == prompt_tokens(usage)
        else:
            assert usage.cache_read_input_tokens == prompt_tokens(previous.usage), request_no
            assert usage.input_tokens == 0
        assert reply.stop_reason == "tool_use"
        messages += [as_assistant(reply), answer_tools(reply, f"result {request_no}")]
        if request_no % 3 == 0:
            messages.append({"role": "system", "content": f"Operator note {request_no}: go on"})
        previous = reply


async def test_editing_the_system_prompt_misses(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    messages = task()
    system = system_prompt()
    first = await ask(anthropic_client, messages, system)
    messages += [as_assistant(first), answer_tools(first)]
    again = await ask(anthropic_client, messages, system + " Also: be brief.")
    assert again.usage.cache_read_input_tokens == 0
    assert again.usage.cache_creation_input_tokens == prompt_tokens(again.usage)


async def test_lookback_reaches_back_twenty_steps(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    system = system_prompt()
    first = await ask(anthropic_client, task(), system)
    history = [*task(), as_assistant(first), answer_tools(first)]

    def extra_blocks(count: int, tag: str) -> Json:
        return {
            "role": "user",
            "content": [{"type": "text", "text": f"{tag} {i}"} for i in range(count)],
        }

    # The reply (text + tool_use) and the tool_result are 3 steps; 16 more make 19.
    near = await ask(anthropic_client, [*history, extra_blocks(16, "near")], system)
    assert near.usage.cache_read_input_tokens == prompt_tokens(first.usage)
    # 17 more make 20 steps back from the new breakpoint: out of reach.
    far = await ask(anthropic_client, [*history, extra_blocks(17, "far")], system)
    assert far.usage.cache_read_input_tokens == 0


async def test_a_run_of_tool_results_is_one_lookback_step(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    system = system_prompt()
    first = await ask(anthropic_client, task(), system)
    ids = [f"toolu_{i:02}" for i in range(30)]
    command = {"command": "true"}
    calls = [{"type": "tool_use", "id": i, "name": "run_command", "input": command} for i in ids]
    results = [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in ids]
    messages = [
        *task(),
        as_assistant(first),
        answer_tools(first),
        {"role": "assistant", "content": calls},
        {"role": "user", "content": results},
    ]
    reply = await ask(anthropic_client, messages, system)
    assert reply.usage.cache_read_input_tokens == prompt_tokens(first.usage)


async def test_nothing_is_cached_below_the_model_minimum(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    short_system = "Be brief. " * 120  # about 300 tokens: under claude-opus-4-8's 1,024
    for _ in range(2):
        reply = await ask(anthropic_client, task(), short_system, model="claude-opus-4-8")
        assert reply.usage.cache_read_input_tokens == 0
        assert reply.usage.cache_creation_input_tokens == 0
        assert reply.usage.input_tokens == prompt_tokens(reply.usage)


async def test_without_cache_control_nothing_is_cached(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    system = system_prompt()
    for _ in range(2):
        reply = await ask(anthropic_client, task(), system, cache_control=None)
        assert reply.usage.cache_read_input_tokens == 0
        assert reply.usage.cache_creation_input_tokens == 0


async def test_explicit_breakpoints_split_creation_by_ttl(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    long_text = system_prompt()
    system: list[Json] = [
        {"type": "text", "text": long_text, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": long_text + " more", "cache_control": {"type": "ephemeral"}},
    ]
    first = await ask(anthropic_client, task(), system, cache_control=None)
    assert first.usage.cache_creation is not None
    one_hour = first.usage.cache_creation.ephemeral_1h_input_tokens
    five_min = first.usage.cache_creation.ephemeral_5m_input_tokens
    assert one_hour > 0 and five_min > 0
    assert one_hour + five_min == first.usage.cache_creation_input_tokens
    assert first.usage.input_tokens > 0  # the user turn is after the last breakpoint
    second = await ask(anthropic_client, task(), system, cache_control=None)
    assert second.usage.cache_read_input_tokens == one_hour + five_min


async def test_entries_expire_after_their_ttl_from_the_last_use() -> None:
    now = [1000.0]
    async with embedded(SimulatorConfig(clock=lambda: now[0])) as sim:
        system = system_prompt()
        first = await ask(sim.client, task(), system)
        total = prompt_tokens(first.usage)

        now[0] += 299  # within 5 minutes: a hit, which refreshes the entry
        assert (await ask(sim.client, task(), system)).usage.cache_read_input_tokens == total
        now[0] += 299  # 598 s after the write, 299 s after the refresh
        assert (await ask(sim.client, task(), system)).usage.cache_read_input_tokens == total
        now[0] += 301
        expired = await ask(sim.client, task(), system)
        assert expired.usage.cache_read_input_tokens == 0
        assert expired.usage.cache_creation_input_tokens == total


async def test_one_hour_entries_outlive_five_minutes() -> None:
    now = [0.0]
    one_hour: Json = {"type": "ephemeral", "ttl": "1h"}
    async with embedded(SimulatorConfig(clock=lambda: now[0])) as sim:
        system = system_prompt()
        first = await ask(sim.client, task(), system, cache_control=one_hour)
        assert first.usage.cache_creation is not None
        assert first.usage.cache_creation.ephemeral_1h_input_tokens == prompt_tokens(first.usage)
        now[0] += 3000
        later = await ask(sim.client, task(), system, cache_control=one_hour)
        assert later.usage.cache_read_input_tokens == prompt_tokens(first.usage)


async def test_the_control_clock_expires_entries() -> None:
    async with embedded(SimulatorConfig()) as sim:
        system = system_prompt()
        await ask(sim.client, task(), system)
        response = await sim.control.post("/_sim/clock", json={"advance_s": 301})
        assert response.status_code == 200
        assert (await ask(sim.client, task(), system)).usage.cache_read_input_tokens == 0


async def test_count_tokens_equals_the_prompt_tokens(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    system = system_prompt()
    messages = task()
    reply = await ask(anthropic_client, messages, system)
    messages += [as_assistant(reply), answer_tools(reply), {"role": "system", "content": "note"}]
    params: Json = {"model": MODEL, "system": system, "messages": messages}
    counted = await anthropic_client.messages.count_tokens(**params)
    after = await ask(anthropic_client, messages, system)
    assert counted.input_tokens == prompt_tokens(after.usage)
