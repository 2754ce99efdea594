"""Deterministic token counts, and the rendered prompt the cache model walks.

The counting rule (the simulator's stand-in for a tokenizer):

- A prompt renders as an ordered list of blocks: each tool definition, then each
  top-level system text block, then every message's content blocks in order. String
  content is one block ``{"type": "text", "text": ...}``; a ``role:"system"``
  message's blocks render like any other; an effort-only system message, and a
  turn-scoped one (``clear_at: "next_user_message"``) once a user message follows
  it, render nothing.
- A block costs ``ceil(len(utf8(canonical_json(block))) / 4)`` tokens, at least 1.
  ``canonical_json`` drops every ``cache_control`` key (at any depth), sorts keys and
  uses compact separators with ``ensure_ascii=False``.
- A prompt's tokens are the sum over its blocks; ``count_tokens`` answers exactly
  that. A reply's output tokens follow the same rule over its content blocks, so a
  reply costs as much output as it later costs input when sent back as history.
- Role boundaries and request-level settings cost nothing; they only enter hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.simulator.request import JsonObject, MessagesRequest, content_blocks

#: Block types that cannot carry a cache breakpoint (automatic caching walks past them).
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})
#: A run of consecutive blocks of one of these types is one lookback position.
_RUN_TYPES = frozenset({"tool_use", "tool_result"})


def canonical_json(value: object) -> str:
    return json.dumps(
        _without_cache_control(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def block_tokens(block: Mapping[str, object]) -> int:
    return _tokens(canonical_json(block))


@dataclass(frozen=True, slots=True)
class Position:
    """One rendered block of the prompt, in cache order."""

    #: The block as sent, ``cache_control`` included.
    block: JsonObject
    #: Its path in the request, for error messages: ``tools.2``, ``messages.4.content.0``.
    path: str
    tokens: int
    #: Tokens of the prompt up to and including this block.
    cumulative_tokens: int
    #: Hash of everything rendered up to and including this block.
    digest: bytes
    #: Lookback step: consecutive tool_use (or tool_result) blocks share one.
    step: int
    #: Whether the automatic breakpoint may land here.
    markable: bool


@dataclass(frozen=True, slots=True)
class Prompt:
    positions: tuple[Position, ...]
    tools_tokens: int
    system_tokens: int
    tools_digest: str
    system_digest: str
    #: Per message: hash of ``messages[:i+1]`` as sent (clear_at and all).
    message_digests: tuple[str, ...]
    #: Per message: prompt tokens up to the end of that message.
    message_tokens: tuple[int, ...]

    @property
    def total_tokens(self) -> int:
        return self.positions[-1].cumulative_tokens if self.positions else 0


class _Chain:
    """A running hash of the rendered prompt; each step folds in a tag and a payload."""

    def __init__(self, seed: str) -> None:
        self.digest = hashlib.sha256(seed.encode()).digest()

    def fold(self, tag: str, payload: str) -> bytes:
        self.digest = hashlib.sha256(
            self.digest + tag.encode() + b"\x00" + payload.encode()
        ).digest()
        return self.digest


def render_prompt(request: MessagesRequest) -> Prompt:
    """Render ``request`` into cache positions plus the fingerprints diagnostics compare."""
    positions: list[Position] = []
    chain = _Chain("prompt")
    total = 0
    step = -1

    def add(block: JsonObject, path: str, tag: str, joins_run: bool, markable: bool) -> None:
        nonlocal total, step
        payload = canonical_json(block)
        tokens = _tokens(payload)
        total += tokens
        step += 0 if joins_run else 1
        digest = chain.fold(tag, payload)
        positions.append(Position(block, path, tokens, total, digest, step, markable))

    for j, tool in enumerate(request.tools):
        add(tool, f"tools.{j}", "tool", False, True)
    tools_tokens = total
    for j, block in enumerate(request.system):
        add(block, f"system.{j}", "system", False, _markable(block))
    system_tokens = total - tools_tokens
    # Settings such as tool_choice or thinking sit between system and messages: a
    # change invalidates the message cache but not tools or system.
    chain.fold("settings", canonical_json(request.settings))

    message_chain = _Chain("messages")
    message_digests: list[str] = []
    message_tokens: list[int] = []
    for i, message in enumerate(request.messages):
        role = str(message["role"])
        cleared = _cleared(request.messages, i)
        previous_type = ""
        for j, block in enumerate([] if cleared else content_blocks(message["content"])):
            kind = str(block.get("type"))
            joins_run = j > 0 and kind == previous_type and kind in _RUN_TYPES
            tag = f"role:{role}" if j == 0 else "block"
            markable = _markable(block) and message.get("clear_at") != "next_user_message"
            add(block, f"messages.{i}.content.{j}", tag, joins_run, markable)
            previous_type = kind
        message_digests.append(message_chain.fold("message", canonical_json(message)).hex())
        message_tokens.append(total)

    return Prompt(
        positions=tuple(positions),
        tools_tokens=tools_tokens,
        system_tokens=system_tokens,
        tools_digest=_digest(request.tools),
        system_digest=_digest(request.system),
        message_digests=tuple(message_digests),
        message_tokens=tuple(message_tokens),
    )


def _tokens(payload: str) -> int:
    return max(1, -(-len(payload.encode()) // 4))


def _markable(block: Mapping[str, object]) -> bool:
    kind = block.get("type")
    return kind not in _UNMARKABLE and not (kind == "text" and not block.get("text"))


def _cleared(messages: list[JsonObject], index: int) -> bool:
    """A turn-scoped system message stops rendering once any user message follows it."""
    message = messages[index]
    if message.get("role") != "system" or message.get("clear_at") != "next_user_message":
        return False
    return any(later.get("role") == "user" for later in messages[index + 1 :])


def _digest(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _without_cache_control(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_control(item) for item in value]
    return value
