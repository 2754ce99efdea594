"""The daemon's model client, built at the first model call, once the SDK is imported.

`import anthropic` takes 1.4–2 s, the larger part of a daemon's restart. The daemon
starts that import in a worker thread (`load_sdk`) once its API is ready to serve, and
serves and takes nudges meanwhile; only a model call made before the import has
finished waits for it (one made before `load_sdk` starts it). Nothing imports the SDK at
module level before then (`daemon.model_client` imports it where it calls it).

The client streams over the SDK's aiohttp transport (`DefaultAioHttpClient`, the
`anthropic[aiohttp]` extra; the SDK imports aiohttp with itself): it parses HTTP in C,
where the default httpx2 stack (h11, httpcore, anyio, in Python) spent 1.6–1.9 times
the CPU per streamed event (`scripts/bench_stream --transport`).
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from pydantic import JsonValue

from daemon.agent_state import ModelReply
from daemon.model_client import AnthropicModelClient, StreamProgress, TextSink

if TYPE_CHECKING:
    import anthropic


class LazyModelClient:
    """An `AnthropicModelClient` on an `AsyncAnthropic` made when first called."""

    def __init__(self, *, api_key: str, base_url: str | None, max_retries: int) -> None:
        self._options = {"api_key": api_key, "base_url": base_url, "max_retries": max_retries}
        self._sdk: asyncio.Future[ModuleType] | None = None
        self._client: AnthropicModelClient | None = None

    def load_sdk(self) -> None:
        """Start importing the SDK in a worker thread, if not started yet."""
        if self._sdk is None:
            loop = asyncio.get_running_loop()
            self._sdk = loop.run_in_executor(None, importlib.import_module, "anthropic")

    async def complete(
        self,
        request: dict[str, JsonValue],
        on_text: TextSink | None = None,
        progress: StreamProgress | None = None,
    ) -> ModelReply:
        return await (await self._built()).complete(request, on_text, progress)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _built(self) -> AnthropicModelClient:
        if self._client is None:
            self.load_sdk()
            assert self._sdk is not None
            sdk = await self._sdk
            if self._client is None:  # another call may have built it meanwhile
                client: anthropic.AsyncAnthropic = sdk.AsyncAnthropic(
                    **self._options, http_client=sdk.DefaultAioHttpClient()
                )
                self._client = AnthropicModelClient(client)
        return self._client
