"""Server-sent events for one streamed reply (notes §5.1), paced at a token rate.

Owns the frame format (always an ``event:`` line plus one ``data:`` line of JSON
whose ``type`` matches), the event order — ``message_start`` (input usage with the
cache fields, ``diagnostics``) → for each block ``content_block_start``, deltas,
``content_block_stop`` → ``message_delta`` (cumulative usage, ``output_tokens``
included) → ``message_stop`` — with a ``ping`` after the first block starts and then
every `PING_INTERVAL` seconds, and the pacing: text and tool-input JSON are cut into
4-character tokens released at ``token_rate`` tokens per second (None or 0: as fast
as possible, in larger deltas). A stream can be told to fail after ``message_start``
with an ``error`` frame, or by cutting the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from daemon.simulator.errors import SimulatedDrop
from daemon.simulator.request import JsonObject
from daemon.simulator.script import Reply

CHARS_PER_TOKEN = 4
#: Tokens per delta when unpaced, and the most a paced delta catches up with at once.
UNPACED_TOKENS_PER_DELTA = 16
MAX_TOKENS_PER_DELTA = 64
PING_INTERVAL = 10.0

Interruption = Literal["error", "drop"]
OVERLOADED_FRAME: JsonObject = {
    "type": "error",
    "error": {"type": "overloaded_error", "message": "Overloaded"},
}


def frame(event: JsonObject) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


async def stream_message(
    envelope: JsonObject,
    reply: Reply,
    usage: JsonObject,
    *,
    token_rate: float | None,
    interruption: Interruption | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body of ``reply``; ``envelope`` holds id, model, diagnostics and the like."""
    started = {
        **envelope,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": min(1, reply.output_tokens)},
    }
    yield frame({"type": "message_start", "message": started})
    if interruption == "error":
        yield frame(OVERLOADED_FRAME)
        return
    if interruption == "drop":
        raise SimulatedDrop

    pacer = _Pacer(token_rate)
    for index, block in enumerate(reply.content):
        yield frame({"type": "content_block_start", "index": index, "content_block": _shell(block)})
        if index == 0:
            yield frame({"type": "ping"})
        for key, delta in _deltas(block):
            text = str(delta[key])
            tokens = [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]
            if not tokens:
                yield frame({"type": "content_block_delta", "index": index, "delta": delta})
            while tokens:
                count = await pacer.release(len(tokens))
                piece = {**delta, key: "".join(tokens[:count])}
                del tokens[:count]
                yield frame({"type": "content_block_delta", "index": index, "delta": piece})
                if pacer.ping_due():
                    yield frame({"type": "ping"})
        yield frame({"type": "content_block_stop", "index": index})
    final_usage = {k: v for k, v in usage.items() if k != "cache_creation"}
    yield frame(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {**final_usage, "output_tokens": reply.output_tokens},
        }
    )
    yield frame({"type": "message_stop"})


def _shell(block: JsonObject) -> JsonObject:
    """A block as ``content_block_start`` announces it, before any delta."""
    if block["type"] == "text":
        return {"type": "text", "text": ""}
    if block["type"] == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
    return block


def _deltas(block: JsonObject) -> Iterator[tuple[str, JsonObject]]:
    """Per streamed field: the delta template and the key whose text is released in pieces."""
    if block["type"] == "text":
        yield "text", {"type": "text_delta", "text": block["text"]}
    elif block["type"] == "tool_use":
        # The API's first input_json_delta is often empty; clients must cope.
        yield "partial_json", {"type": "input_json_delta", "partial_json": ""}
        yield (
            "partial_json",
            {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
        )


class _Pacer:
    """Releases text in token-sized pieces on a fixed schedule from the stream's start."""

    def __init__(self, token_rate: float | None) -> None:
        self._interval = 1.0 / token_rate if token_rate else 0.0
        self._loop = asyncio.get_running_loop()
        self._started = self._last_ping = self._loop.time()
        self._released = 0

    async def release(self, wanted: int) -> int:
        """How many of ``wanted`` tokens go out in the next delta, once they are due."""
        if not self._interval:
            return min(wanted, UNPACED_TOKENS_PER_DELTA)
        now = self._loop.time()
        due = int((now - self._started) / self._interval) + 1 - self._released
        if due < 1:
            await asyncio.sleep(self._started + self._released * self._interval - now)
            due = 1
        count = min(wanted, due, MAX_TOKENS_PER_DELTA)
        self._released += count
        return count

    def ping_due(self) -> bool:
        now = self._loop.time()
        if now - self._last_ping < PING_INTERVAL:
            return False
        self._last_ping = now
        return True
