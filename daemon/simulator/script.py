"""What the scripted model answers to one request.

The reply depends only on the request: the scenario (chosen by the first user
message), the turn index (how many assistant messages ``messages`` already holds) and
any nudge that arrived since the last assistant message (a ``role:"system"`` message,
or a user text block starting with ``[Operator note``). A nudge is acknowledged
first, in a text block made from the scenario's ``ack_template``, so a human sees it
land. Tool-use ids are ``toolu_`` plus hex derived from the conversation so far,
hence stable across retries and restarts. A reply longer than ``max_tokens`` is cut
(text shortened, later blocks dropped) and stops with ``max_tokens``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from daemon.simulator.request import JsonObject, content_blocks
from daemon.simulator.scenario import Scenario
from daemon.simulator.tokens import block_tokens

NOTE_PREFIX = "[Operator note"


@dataclass(frozen=True, slots=True)
class Reply:
    content: list[JsonObject]
    stop_reason: str
    output_tokens: int
    #: The turn's own streaming pace, if it has one (None: the server's).
    token_rate: float | None = None


def plan_reply(
    scenario: Scenario,
    messages: Sequence[Mapping[str, object]],
    *,
    seed: str,
    max_tokens: int,
) -> Reply:
    """The reply for a request whose conversation hashes to ``seed``."""
    turn_index = sum(1 for m in messages if m.get("role") == "assistant")
    turn = scenario.turn(turn_index)
    content: list[JsonObject] = []
    note = latest_note(messages)
    if note is not None:
        content.append({"type": "text", "text": scenario.ack_template.replace("{text}", note)})
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for k, call in enumerate(turn.tool_calls):
        digest = hashlib.sha256(f"{seed}:{turn_index}:{k}".encode()).hexdigest()
        content.append(
            {
                "type": "tool_use",
                "id": f"toolu_{digest[:24]}",
                "name": call.name,
                "input": dict(call.input),
            }
        )
    stop_reason = "tool_use" if turn.tool_calls else "end_turn"
    reply = _within(content, stop_reason, max_tokens)
    if note is None and turn.token_rate is not None:
        return replace(reply, token_rate=turn.token_rate)
    return reply


def latest_note(messages: Sequence[Mapping[str, object]]) -> str | None:
    """The text of the last nudge after the last assistant message, if any."""
    note: str | None = None
    for message in reversed(messages):
        role = message.get("role")
        if role == "assistant":
            break
        texts = [
            str(block.get("text", ""))
            for block in content_blocks(message.get("content"))
            if block.get("type") == "text"
        ]
        if role == "system" and texts:
            note = "\n".join(texts)
        elif role == "user":
            note = next((t for t in reversed(texts) if t.startswith(NOTE_PREFIX)), None)
        if note is not None:
            return note
    return None


def _within(content: list[JsonObject], stop_reason: str, max_tokens: int) -> Reply:
    """Cut ``content`` to ``max_tokens`` output tokens, as a model would stop mid-reply."""
    kept: list[JsonObject] = []
    used = 0
    for block in content:
        tokens = block_tokens(block)
        if used + tokens <= max_tokens:
            kept.append(block)
            used += tokens
            continue
        if block["type"] == "text":
            cut = _cut_text(str(block["text"]), max_tokens - used)
            if cut:
                kept.append({"type": "text", "text": cut})
                used += block_tokens(kept[-1])
        return Reply(kept, "max_tokens", used)
    return Reply(kept, stop_reason, used)


def _cut_text(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose text block fits in ``budget`` tokens."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if block_tokens({"type": "text", "text": text[:mid]}) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low]
