"""A Messages API request body, checked and normalised the way the API does it.

Owns the 400s about a request's shape: required fields, roles and content blocks,
the beta-gated fields of system messages (``clear_at``, ``output_config``, tool
changes; notes §1.5-§1.7), system messages sent to a model without them, and the
placement rules of `daemon.placement`. Cache breakpoint limits are checked where
breakpoints are found (`cache.py`). Unknown top-level fields are accepted: the SDK
sends many the simulator has no use for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from daemon.catalog import CATALOG, model_info
from daemon.placement import placement_problems
from daemon.simulator.errors import InvalidRequest, NotFound

JsonObject = dict[str, object]

CLEAR_AT_BETA = "mid-conversation-system-clear-at-2026-08-21"
OUTPUT_CONFIG_BETA = "mid-conversation-output-config-2026-07-01"
TOOL_CHANGE_BETAS = frozenset(
    {"inline-tools-2026-09-15", "mid-conversation-tool-changes-2026-07-01"}
)
EFFORTS = ("low", "medium", "high", "xhigh", "max")
#: Request-level settings outside tools/system that still shape the prompt: changing
#: one invalidates the message cache and makes diagnostics answer ``unavailable``.
SETTING_FIELDS = ("tool_choice", "thinking", "output_config", "context_management", "output_format")


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    model: str
    #: None for count_tokens, which takes no max_tokens.
    max_tokens: int | None
    messages: list[JsonObject]
    #: The top-level system prompt as text blocks (a string becomes one block).
    system: list[JsonObject]
    tools: list[JsonObject]
    stream: bool
    betas: frozenset[str]
    #: Top-level automatic caching marker, if any.
    cache_control: JsonObject | None
    wants_diagnostics: bool
    previous_message_id: str | None
    speed: str | None
    settings: JsonObject


def parse_betas(header: str | None) -> frozenset[str]:
    return frozenset(b.strip() for b in (header or "").split(",") if b.strip())


def parse_request(body: object, *, betas: frozenset[str], count_only: bool) -> MessagesRequest:
    """Check ``body`` (decoded JSON) and normalise it; raises the API's 400 or 404."""
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise InvalidRequest(
            "model: Field required" if model is None else "model: Input should be a valid string"
        )
    if model not in CATALOG:
        raise NotFound(f"model: {model}")
    max_tokens = None if count_only else _max_tokens(body.get("max_tokens"))
    messages = _messages(body.get("messages"), model, betas)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    cache_control = body.get("cache_control")
    if cache_control is not None and not isinstance(cache_control, dict):
        raise InvalidRequest("cache_control: Input should be a valid dictionary")
    diagnostics = body.get("diagnostics")
    previous: str | None = None
    if diagnostics is not None:
        if not isinstance(diagnostics, dict):
            raise InvalidRequest("diagnostics: Input should be a valid dictionary")
        given = diagnostics.get("previous_message_id")
        if given is not None and not isinstance(given, str):
            raise InvalidRequest("diagnostics.previous_message_id: Input should be a valid string")
        previous = given
    speed = body.get("speed")
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        messages=messages,
        system=_system(body.get("system")),
        tools=_tools(body.get("tools")),
        stream=stream,
        betas=betas,
        cache_control=cache_control,
        wants_diagnostics=diagnostics is not None,
        previous_message_id=previous,
        speed=speed if isinstance(speed, str) else None,
        settings={name: body[name] for name in SETTING_FIELDS if body.get(name) is not None},
    )


def content_blocks(content: object) -> list[JsonObject]:
    """A message's content as blocks: a non-empty string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _max_tokens(value: object) -> int:
    if value is None:
        raise InvalidRequest("max_tokens: Field required")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest("max_tokens: Input should be a valid integer")
    if value < 0:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 0")
    return value


def _messages(value: object, model: str, betas: frozenset[str]) -> list[JsonObject]:
    if value is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(value, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not value:
        raise InvalidRequest("messages: at least one message is required")
    messages: list[JsonObject] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{index}: Input should be a valid dictionary")
        _check_message(index, message, model, betas)
        messages.append(message)
    problems = placement_problems(messages)
    if problems:
        raise InvalidRequest(str(problems[0]))
    return messages


def _check_message(index: int, message: JsonObject, model: str, betas: frozenset[str]) -> None:
    where = f"messages.{index}"
    role = message.get("role")
    if role not in ("user", "assistant", "system"):
        raise InvalidRequest(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
    if "content" not in message:
        raise InvalidRequest(f"{where}.content: Field required")
    content = message["content"]
    if not isinstance(content, str | list):
        raise InvalidRequest(f"{where}.content: Input should be a valid string or list")
    for j, block in enumerate(content if isinstance(content, list) else []):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"{where}.content.{j}.type: Field required")
    if role != "system":
        for name in ("clear_at", "output_config"):
            if name in message:
                raise InvalidRequest(_not_permitted(where, name, betas))
        return
    if not model_info(model).system_messages:
        raise InvalidRequest(
            f"{where}: mid-conversation system messages are not supported for model {model}; "
            "send the note in a user turn instead"
        )
    _check_system_message(where, message, content_blocks(content), betas)


def _check_system_message(
    where: str, message: JsonObject, blocks: list[JsonObject], betas: frozenset[str]
) -> None:
    for j, block in enumerate(blocks):
        kind = block["type"]
        if kind in ("tool_addition", "tool_removal") and betas & TOOL_CHANGE_BETAS:
            continue
        if kind != "text":
            raise InvalidRequest(f"{where}.content.{j}.type: Input should be 'text'")
    output_config = message.get("output_config")
    if output_config is not None:
        if OUTPUT_CONFIG_BETA not in betas:
            raise InvalidRequest(f"{where}.output_config: Extra inputs are not permitted")
        if not isinstance(output_config, dict):
            raise InvalidRequest(f"{where}.output_config: Input should be a valid dictionary")
        for key, value in output_config.items():
            if key != "effort":
                raise InvalidRequest(f"{where}.output_config.{key}: Extra inputs are not permitted")
            if value not in EFFORTS:
                raise InvalidRequest(
                    f"{where}.output_config.effort: Input should be "
                    "'low', 'medium', 'high', 'xhigh' or 'max'"
                )
    if "clear_at" not in message:
        return
    if CLEAR_AT_BETA not in betas:
        raise InvalidRequest(f"{where}.clear_at: Extra inputs are not permitted")
    clear_at = message["clear_at"]
    if clear_at not in ("next_user_message", "never"):
        raise InvalidRequest(f"{where}.clear_at: Input should be 'next_user_message' or 'never'")
    if clear_at != "next_user_message":
        return
    scoped = "(clear_at: 'next_user_message')"
    if any(block["type"] != "text" for block in blocks):
        raise InvalidRequest(
            f"{where}: a turn-scoped system message supports text blocks only {scoped}"
        )
    if output_config is not None:
        raise InvalidRequest(
            f"{where}: output_config is not permitted on a turn-scoped system message {scoped}"
        )
    for j, block in enumerate(blocks):
        if "cache_control" in block:
            raise InvalidRequest(
                f"{where}.content.{j}: cache_control is not permitted on a turn-scoped "
                f"system message {scoped}"
            )


def _not_permitted(where: str, name: str, betas: frozenset[str]) -> str:
    if name == "clear_at" and CLEAR_AT_BETA in betas:
        return f"{where}.clear_at: clear_at is only permitted on role 'system' messages"
    return f"{where}.{name}: Extra inputs are not permitted"


def _system(value: object) -> list[JsonObject]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        raise InvalidRequest("system: Input should be a valid string or list")
    blocks: list[JsonObject] = []
    for j, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"system.{j}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"system.{j}.text: Field required")
        blocks.append(block)
    return blocks


def _tools(value: object) -> list[JsonObject]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("tools: Input should be a valid list")
    tools: list[JsonObject] = []
    for j, tool in enumerate(value):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools.{j}.name: Field required")
        tools.append(dict(tool))
    return tools
