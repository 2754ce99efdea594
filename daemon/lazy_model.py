"""The daemon's model client, built at the first model call, once the SDK is imported.

`import anthropic` takes 1.4–2 s, the larger part of a daemon's restart. The daemon
starts that import in a worker thread as it starts (`import_sdk`) and serves the API and
takes nudges meanwhile; only a model call made before the import has finished waits
for it. Nothing imports the SDK at module level before then (`daemon.model_client`
imports it where it calls it).
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


def import_sdk() -> asyncio.Future[ModuleType]:
    """The `anthropic` package, imported in a worker thread."""
    return asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "anthropic"))


class LazyModelClient:
    """An `AnthropicModelClient` on an `AsyncAnthropic` made when first called."""

    def __init__(
        self,
        sdk: asyncio.Future[ModuleType],
        *,
        api_key: str,
        base_url: str | None,
        max_retries: int,
    ) -> None:
        self._sdk = sdk
        self._options = {"api_key": api_key, "base_url": base_url, "max_retries": max_retries}
        self._client: AnthropicModelClient | None = None

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
            sdk = await self._sdk
            if self._client is None:  # another call may have built it meanwhile
                client: anthropic.AsyncAnthropic = sdk.AsyncAnthropic(**self._options)
                self._client = AnthropicModelClient(client)
        return self._client
