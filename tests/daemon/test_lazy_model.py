"""The daemon serves before the anthropic SDK is loaded: nothing it imports at start
loads the SDK, and its model client is built at the first call, once the import
(`LazyModelClient.load_sdk`, in a worker thread) has finished."""

from __future__ import annotations

import asyncio
import subprocess
import sys

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


def test_importing_the_daemon_loads_neither_the_sdk_its_http_stacks_nor_the_simulator() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, daemon.service\n"
            "print(*sorted(m for m in sys.modules"
            " if m.split('.')[0] in ('anthropic', 'httpx2', 'aiohttp')"
            " or m.startswith('daemon.simulator.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.split() == []


async def test_concurrent_first_calls_share_one_client_built_once_the_sdk_is_loaded(
    simulator: SimulatorHandle,
) -> None:
    client = LazyModelClient(api_key=simulator.api_key, base_url=simulator.base_url, max_retries=0)
    replies = await asyncio.gather(
        client.complete(request("hello")), client.complete(request("hello again"))
    )
    assert all(reply.content and reply.stop_reason for reply in replies)
    await client.close()
