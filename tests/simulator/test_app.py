"""The HTTP surface through the real SDK: auth, request ids, JSON replies, 400s, models."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam

from tests.fixtures.simulator import SimulatorHandle
from tests.simulator.support import MODEL, Json, answer_tools, as_assistant, create

HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]


async def test_bearer_key_from_the_sdk(anthropic_client: anthropic.AsyncAnthropic) -> None:
    raw = await anthropic_client.messages.with_raw_response.create(
        model=MODEL, max_tokens=1000, messages=HELLO
    )
    assert raw.headers["request-id"].startswith("req_")
    message = await raw.parse()
    assert message.id.startswith("msg_")
    assert message.role == "assistant" and message.model == MODEL
    assert message.stop_reason == "tool_use"


def test_x_api_key_header(simulator: SimulatorHandle) -> None:
    body = {"model": MODEL, "max_tokens": 100, "messages": HELLO}
    response = httpx.post(
        f"{simulator.base_url}/v1/messages",
        json=body,
        headers={"x-api-key": simulator.api_key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200
    assert response.json()["type"] == "message"


def test_missing_key_is_401_in_the_api_shape(simulator: SimulatorHandle) -> None:
    response = httpx.post(f"{simulator.base_url}/v1/messages", json={})
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"] == response.headers["request-id"]


async def test_wrong_key_raises_authentication_error(simulator: SimulatorHandle) -> None:
    client = anthropic.AsyncAnthropic(api_key="wrong", base_url=simulator.base_url)
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    await client.close()


def test_control_endpoints_need_the_key(simulator: SimulatorHandle) -> None:
    assert httpx.get(f"{simulator.base_url}/_sim/requests").status_code == 401


async def test_misplaced_system_messages_are_400(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    first = await create(anthropic_client, model=MODEL, max_tokens=1000, messages=HELLO)
    note: Json = {"role": "system", "content": "Operator note: hi"}
    history = [*HELLO, as_assistant(first)]
    cases = {
        "between tool_use and tool_result": (
            [*history, note, answer_tools(first)],
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after",
        ),
        "first": ([note, *HELLO], "messages.0: a system message must immediately follow"),
        "followed by user": (
            [*HELLO, note, {"role": "user", "content": "more"}],
            "messages.1: a system message must be the last message",
        ),
    }
    for messages, expected in cases.values():
        with pytest.raises(anthropic.BadRequestError) as caught:
            await create(anthropic_client, model=MODEL, max_tokens=1000, messages=messages)
        assert expected in caught.value.message
        body = caught.value.body
        assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"


async def test_system_message_after_tool_result_is_accepted(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    first = await create(anthropic_client, model=MODEL, max_tokens=1000, messages=HELLO)
    messages = [
        *HELLO,
        as_assistant(first),
        answer_tools(first),
        {"role": "system", "content": "Operator note: prefer tabs"},
    ]
    reply = await create(anthropic_client, model=MODEL, max_tokens=1000, messages=messages)
    assert reply.content[0].type == "text"


async def test_system_message_to_a_model_without_them_is_400(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="not supported for model claude-sonnet-5"):
        await create(
            anthropic_client,
            model="claude-sonnet-5",
            max_tokens=100,
            messages=[*HELLO, {"role": "system", "content": "note"}],
        )


async def test_prefill_is_400(anthropic_client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="Prefilling assistant messages"):
        await create(
            anthropic_client,
            model=MODEL,
            max_tokens=100,
            messages=[*HELLO, {"role": "assistant", "content": "Sure"}],
        )


def test_shape_errors(simulator: SimulatorHandle) -> None:
    headers = {"x-api-key": simulator.api_key}
    url = f"{simulator.base_url}/v1/messages"
    cases = [
        ({"model": MODEL, "messages": HELLO}, "max_tokens: Field required"),
        ({"max_tokens": 10, "messages": HELLO}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 10}, "messages: Field required"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "tool", "content": "x"}]},
            "messages.0.role: Input should be 'user', 'assistant' or 'system'",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [{"role": "system", "content": [], "output_config": {"effort": "low"}}],
            },
            "messages.0.output_config: Extra inputs are not permitted",
        ),
    ]
    for body, expected in cases:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["message"] == expected


async def test_effort_only_system_message_may_come_first_with_its_beta(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    reply = await anthropic_client.beta.messages.create(
        model=MODEL,
        max_tokens=1000,
        betas=["mid-conversation-output-config-2026-07-01"],
        messages=[
            {"role": "system", "content": [], "output_config": {"effort": "low"}},
            {"role": "user", "content": "hello"},
        ],
    )
    assert reply.stop_reason == "tool_use"


async def test_unknown_model_is_404(anthropic_client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        await create(anthropic_client, model="claude-nope", max_tokens=10, messages=HELLO)


async def test_more_than_four_breakpoints_is_400(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    def marked(count: int) -> list[Json]:
        blocks: list[Json] = [
            {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
            for i in range(count)
        ]
        return [*blocks, {"type": "text", "text": "unmarked"}]

    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks"):
        await create(
            anthropic_client,
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": marked(5)}],
        )
    with pytest.raises(anthropic.BadRequestError, match="automatic caching needs a free"):
        await create(
            anthropic_client,
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": marked(4)}],
            cache_control={"type": "ephemeral"},
        )


async def test_max_tokens_cuts_the_reply(anthropic_client: anthropic.AsyncAnthropic) -> None:
    reply = await create(anthropic_client, model=MODEL, max_tokens=20, messages=HELLO)
    assert reply.stop_reason == "max_tokens"
    assert reply.usage.output_tokens <= 20
    assert [block.type for block in reply.content] == ["text"]


async def test_models_lists_the_catalog(anthropic_client: anthropic.AsyncAnthropic) -> None:
    page = await anthropic_client.models.list()
    assert MODEL in [model.id for model in page.data]


async def test_requests_are_recorded(
    simulator: SimulatorHandle, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    reply = await create(anthropic_client, model=MODEL, max_tokens=1000, messages=HELLO)
    recorded = [r for r in simulator.requests() if r["message_id"] == reply.id]
    assert len(recorded) == 1
    assert recorded[0]["body"] == {"model": MODEL, "max_tokens": 1000, "messages": HELLO}
    assert recorded[0]["usage"] == reply.usage.model_dump(exclude_none=True)
