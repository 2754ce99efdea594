"""One streamed Messages API reply, read from its raw server-sent events.

The SDK's `messages.stream()` helper rebuilds a pydantic snapshot of the whole message
on every event, and even `create(stream=True)` builds a typed model per event (about
25 µs each): with a hundred agents streaming that was most of the daemon's CPU. Here
the body is cut into events by hand, each event's JSON is decoded once, and the
message is folded together in plain dicts the way the SDK's `accumulate_event` folds
its snapshot, so the result equals the SDK's final message as its `to_dict()`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from jiter import from_json

#: Blocks whose `input` streams as `input_json_delta` pieces (the SDK's TRACKS_TOOL_INPUT).
_TOOL_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
#: The streamed text field of each kind of block the deltas of which are joined at its end.
_STREAMED_FIELD = {"text": "text", "thinking": "thinking"}


class StreamedError(Exception):
    """An `error` event in the middle of a stream (the HTTP status was already 200)."""

    def __init__(self, body: object) -> None:
        super().__init__(str(body))
        #: The event's JSON, or its raw text if it was not JSON.
        self.body = body


class IncompleteStream(Exception):
    """The body ended before `message_stop`, or held invalid tool input JSON."""


async def stream_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The JSON of each named event of an SSE body, as the SDK would pass them on:
    pings, comments, unnamed and empty events are dropped; an `error` event raises
    StreamedError. Lines end with LF or CRLF (the API uses LF)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        if b"\r" in pending:
            # A trailing CR may be half of a CRLF split across chunks: it stays until
            # its LF arrives.
            pending = pending.replace(b"\r\n", b"\n")
        while (end := pending.find(b"\n\n")) >= 0:
            block, pending = pending[:end], pending[end + 2 :]
            name, data = _parse(block)
            if name is None or name == b"ping":
                continue
            if name == b"error":
                raise StreamedError(_error_body(data))
            if data:
                yield json.loads(data)


def _parse(block: bytes) -> tuple[bytes | None, bytes]:
    """An event's name and data (its `data:` lines joined by LF)."""
    name: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value or None
    return name, b"\n".join(data)


def _error_body(data: bytes) -> object:
    try:
        body: object = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")
    return body


class MessageAccumulator:
    """Folds a stream's events into the message; `add` returns each text delta.

    Text, thinking and tool input arrive in pieces kept in lists and joined once,
    when their block stops (or the message ends): no string is rebuilt per delta.
    """

    def __init__(self, *, trailing_strings: bool = False) -> None:
        self.message: dict[str, Any] | None = None
        #: `message_start`'s usage as it came (`message` has it updated at the end).
        self.started_usage: dict[str, Any] | None = None
        #: Characters of text, thinking and tool input streamed so far.
        self.streamed_chars = 0
        self.stopped = False
        self._pieces: dict[int, list[str]] = {}
        # With fine-grained tool streaming the SDK keeps a cut-off last string.
        self._partial_mode: Any = "trailing-strings" if trailing_strings else True

    def add(self, event: dict[str, Any]) -> str | None:
        kind = event["type"]
        if kind == "content_block_delta":
            return self._delta(event["index"], event["delta"])
        if self.message is None:
            if kind != "message_start":
                raise IncompleteStream(f"{kind} event before message_start")
            self.message = event["message"]
            self.started_usage = dict(self.message["usage"])
            return None
        if kind == "content_block_start":
            self.message["content"].append(event["content_block"])
        elif kind == "content_block_stop":
            self._close(event["index"])
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_stop":
            self.stopped = True
        return None

    def final(self) -> dict[str, Any]:
        """The whole message, once `message_stop` came."""
        if self.message is None or not self.stopped:
            raise IncompleteStream("the stream ended before message_stop")
        for index in list(self._pieces):
            self._close(index)
        return self.message

    def _delta(self, index: int, delta: dict[str, Any]) -> str | None:
        if self.message is None:
            raise IncompleteStream("content_block_delta event before message_start")
        block = self.message["content"][index]
        kind, target = delta["type"], block["type"]
        # As in the SDK, a delta that does not fit its block is ignored.
        if kind == "text_delta" and target == "text":
            text: str = delta["text"]
            self._piece(index, text)
            return text
        if kind == "input_json_delta" and target in _TOOL_INPUT_BLOCKS:
            self._piece(index, delta["partial_json"])
        elif kind == "thinking_delta" and target == "thinking":
            self._piece(index, delta["thinking"])
        elif kind == "signature_delta" and target == "thinking":
            block["signature"] = delta["signature"]
        elif kind == "citations_delta" and target == "text":
            block["citations"] = [*(block.get("citations") or []), delta["citation"]]
        elif kind == "compaction_delta" and target == "compaction":
            block["content"] = delta.get("content")
            block["encrypted_content"] = delta.get("encrypted_content")
        return None

    def _piece(self, index: int, piece: str) -> None:
        self._pieces.setdefault(index, []).append(piece)
        self.streamed_chars += len(piece)

    def _close(self, index: int) -> None:
        pieces = self._pieces.pop(index, None)
        if not pieces:
            return
        assert self.message is not None
        block = self.message["content"][index]
        joined = "".join(pieces)
        field = _STREAMED_FIELD.get(block["type"])
        if field is not None:
            block[field] += joined
        elif joined:  # a tool's input; all-empty pieces leave content_block_start's
            try:
                block["input"] = from_json(joined.encode(), partial_mode=self._partial_mode)
            except ValueError as exc:
                raise IncompleteStream(f"invalid tool input JSON from the model: {exc}") from exc

    def _message_delta(self, event: dict[str, Any]) -> None:
        assert self.message is not None
        delta = event["delta"]
        self.message["stop_reason"] = delta.get("stop_reason")
        self.message["stop_sequence"] = delta.get("stop_sequence")
        # Usage figures here are cumulative: they replace message_start's, and one left
        # out keeps its message_start value.
        usage = self.message["usage"]
        for key, value in event.get("usage", {}).items():
            if value is not None:
                usage[key] = value
