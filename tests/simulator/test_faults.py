"""Fault switches as the SDK experiences them: retried, surfaced, or cut off."""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import pytest

from tests.fixtures.simulator import SimulatorHandle
from tests.simulator.support import MODEL

HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def clean(simulator: SimulatorHandle) -> SimulatorHandle:
    simulator.clear()
    return simulator


def statuses(simulator: SimulatorHandle) -> list[object]:
    return [r["status"] for r in simulator.requests() if r["path"] == "/v1/messages"]


async def test_rate_limit_is_retried_after_retry_after(
    clean: SimulatorHandle, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    clean.fault("rate_limit", count=1, retry_after=0.01)
    raw = await anthropic_client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=HELLO
    )
    assert raw.retries_taken == 1
    assert statuses(clean) == [429, 200]


def test_rate_limit_response_shape(clean: SimulatorHandle) -> None:
    clean.fault("rate_limit", count=1, retry_after=7)
    response = httpx.post(
        f"{clean.base_url}/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
        headers={"x-api-key": clean.api_key},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_overloaded_beyond_the_retries_is_surfaced(
    clean: SimulatorHandle, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    clean.fault("overloaded", count=3, retry_after=0.01)
    with pytest.raises(anthropic.OverloadedError):
        await anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert statuses(clean) == [529, 529, 529]


async def test_midstream_error_raises_api_status_error(
    clean: SimulatorHandle, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    clean.fault("midstream_error")
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with anthropic_client.messages.stream(
            model=MODEL, max_tokens=100, messages=HELLO
        ) as stream:
            await stream.get_final_message()
    assert caught.value.status_code == 200
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert statuses(clean) == [200]  # not retried


async def test_drop_mid_stream_is_a_transport_error(
    clean: SimulatorHandle, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    clean.fault("drop")
    # The SDK does not wrap errors raised while a stream is read.
    with pytest.raises(httpx2.RemoteProtocolError):
        async with anthropic_client.messages.stream(
            model=MODEL, max_tokens=100, messages=HELLO
        ) as stream:
            await stream.get_final_message()
    after = await anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert after.id


async def test_drop_without_streaming_is_a_connection_error(
    clean: SimulatorHandle, simulator: SimulatorHandle
) -> None:
    clean.fault("drop", count=2)
    client = anthropic.AsyncAnthropic(
        api_key=simulator.api_key, base_url=simulator.base_url, max_retries=1
    )
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    await client.close()
    assert statuses(clean) == [200, 200]


def test_faults_queue_in_order_and_reject_nonsense(clean: SimulatorHandle) -> None:
    headers = {"x-api-key": clean.api_key}
    url = f"{clean.base_url}/_sim/faults"
    httpx.post(url, json={"kind": "rate_limit", "count": 2}, headers=headers)
    armed = httpx.post(url, json={"kind": "drop"}, headers=headers).json()["faults"]
    assert [(f["kind"], f["count"]) for f in armed] == [("rate_limit", 2), ("drop", 1)]
    bad = httpx.post(url, json={"kind": "gremlins"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    clean.clear()
    assert httpx.get(url, headers=headers).json() == {"faults": []}
