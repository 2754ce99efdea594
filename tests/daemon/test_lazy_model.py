"""The daemon serves before the anthropic SDK is loaded: nothing it imports at start
loads the SDK, and its model client is built at the first call, once the import
(`daemon.lazy_model.import_sdk`) has finished."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import ModuleType

import anthropic
from pydantic import JsonValue

from daemon.catalog import DEFAULT_MODEL
from daemon.lazy_model import LazyModelClient
from tests.fixtures.simulator import SimulatorHandle


def request(text: str) -> dict[str, JsonValue]:
    return {
        "model": DEFAULT_MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    }


def test_importing_the_daemon_loads_neither_the_sdk_nor_the_simulator() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, daemon.service\n"
            "print(*sorted(m for m in sys.modules"
            " if m.split('.')[0] in ('anthropic', 'httpx2') or m.startswith('daemon.simulator.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.split() == []


async def test_a_call_made_before_the_import_has_finished_waits_for_it(
    simulator: SimulatorHandle,
) -> None:
    sdk: asyncio.Future[ModuleType] = asyncio.get_running_loop().create_future()
    client = LazyModelClient(
        sdk, api_key=simulator.api_key, base_url=simulator.base_url, max_retries=0
    )
    first = asyncio.create_task(client.complete(request("hello")))
    second = asyncio.create_task(client.complete(request("hello again")))
    await asyncio.sleep(0)  # both have run up to their wait
    assert not first.done() and not second.done()
    sdk.set_result(anthropic)
    replies = await asyncio.gather(first, second)
    assert all(reply.content and reply.stop_reason for reply in replies)
    await client.close()


async def test_closing_a_client_never_called_does_not_wait_for_the_sdk() -> None:
    sdk: asyncio.Future[ModuleType] = asyncio.get_running_loop().create_future()
    client = LazyModelClient(sdk, api_key="unused", base_url=None, max_retries=0)
    await client.close()
    assert not sdk.done()
