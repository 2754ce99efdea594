"""Where each entry of a Messages API ``messages`` list may stand.

Owns the structural rules the API checks before a request reaches the model
(../shared/docs/anthropic-messages-notes.md §1.3), as one pure function over the
list as it is sent on the wire:

- the first turn is a ``user`` turn;
- a ``role:"system"`` message that carries content comes immediately after a
  ``user`` turn (a tool_result-only one counts, as does an assistant turn ending in
  a server tool result) and is either the last entry or immediately followed by an
  ``assistant`` turn; consecutive system messages are judged as one group;
- an effort-only system message (``content: []`` plus ``output_config``) renders
  nothing and may stand anywhere;
- every ``tool_use`` is answered by a ``tool_result`` with the same id in the very
  next turn, and every ``tool_result`` answers a ``tool_use`` of the turn before;
- a trailing ``assistant`` message is a prefill, which current models reject.

Consecutive ``user`` (or ``assistant``) messages form one turn, as the API merges
them. The simulator turns problems into 400s; the daemon's tests assert there are none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PREFILL_UNSUPPORTED = "Prefilling assistant messages is not supported for this model."
ROLES = ("user", "assistant", "system")


@dataclass(frozen=True, slots=True)
class Problem:
    """One violated rule: the offending entry's index and the API's wording.

    ``str(problem)`` is the full API error text, e.g. ``messages.3: a system message
    must immediately follow a user turn``.
    """

    index: int
    message: str
    #: A field inside the entry (e.g. ``role``), for pydantic-style paths.
    field_name: str = ""

    def __str__(self) -> str:
        where = f"messages.{self.index}" + (f".{self.field_name}" if self.field_name else "")
        return f"{where}: {self.message}"


@dataclass(slots=True)
class _Turn:
    role: str
    indices: list[int] = field(default_factory=list)
    tool_use_ids: list[str] = field(default_factory=list)
    tool_result_ids: list[tuple[int, str]] = field(default_factory=list)
    ends_with_server_result: bool = False


def placement_problems(messages: Sequence[Mapping[str, object]]) -> list[Problem]:
    """Every placement rule ``messages`` breaks, in list order; empty when it is valid."""
    problems: list[Problem] = []
    turns: list[_Turn] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            problems.append(
                Problem(index, "Input should be 'user', 'assistant' or 'system'", "role")
            )
            continue
        content = message.get("content")
        blocks = _blocks(content)
        if role == "system":
            if not blocks:
                if not message.get("output_config"):
                    problems.append(
                        Problem(index, "a system message must carry content or output_config")
                    )
                # Effort-only: renders nothing, so it takes no part in turn order.
                continue
        elif not blocks and not (role == "assistant" and index == len(messages) - 1):
            problems.append(
                Problem(
                    index,
                    "all messages must have non-empty content except for the optional "
                    "final assistant message",
                )
            )
        if not turns or turns[-1].role != role:
            turns.append(_Turn(role))
        turn = turns[-1]
        turn.indices.append(index)
        for block in blocks:
            kind = block.get("type")
            if kind == "tool_use":
                turn.tool_use_ids.append(str(block.get("id")))
            elif kind == "tool_result":
                turn.tool_result_ids.append((index, str(block.get("tool_use_id"))))
        if blocks:
            last_kind = str(blocks[-1].get("type", ""))
            turn.ends_with_server_result = role == "assistant" and (
                last_kind.endswith("_tool_result") and last_kind != "tool_result"
            )

    for position, turn in enumerate(turns):
        before = turns[position - 1] if position else None
        after = turns[position + 1] if position + 1 < len(turns) else None
        problems.extend(_turn_problems(turn, before, after))
    if turns and turns[0].role == "assistant":
        problems.append(Problem(turns[0].indices[0], 'the first message must use the "user" role'))
    if turns and turns[-1].role == "assistant":
        problems.append(Problem(turns[-1].indices[-1], PREFILL_UNSUPPORTED))
    return sorted(problems, key=lambda p: p.index)


def _turn_problems(turn: _Turn, before: _Turn | None, after: _Turn | None) -> list[Problem]:
    problems: list[Problem] = []
    if turn.role == "system":
        follows_user = before is not None and (
            before.role == "user" or before.ends_with_server_result
        )
        if not follows_user:
            problems.append(
                Problem(turn.indices[0], "a system message must immediately follow a user turn")
            )
        if after is not None and after.role != "assistant":
            problems.append(
                Problem(
                    turn.indices[-1],
                    "a system message must be the last message or be immediately followed "
                    "by an assistant turn",
                )
            )
    if turn.tool_use_ids and after is not None:
        answered = (
            {tool_id for _, tool_id in after.tool_result_ids} if after.role == "user" else set()
        )
        missing = [tool_id for tool_id in turn.tool_use_ids if tool_id not in answered]
        if missing:
            problems.append(
                Problem(
                    turn.indices[-1],
                    "`tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message.",
                )
            )
    if turn.tool_result_ids:
        asked = set(before.tool_use_ids) if before is not None else set()
        for index, tool_id in turn.tool_result_ids:
            if tool_id not in asked:
                problems.append(
                    Problem(
                        index,
                        "unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_id}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.",
                    )
                )
    return problems


def _blocks(content: object) -> list[Mapping[str, object]]:
    """The content as blocks: a non-empty string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [block for block in content if isinstance(block, Mapping)]
    return []
