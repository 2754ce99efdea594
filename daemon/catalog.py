"""What steer knows about each model: mid-conversation system message support and
minimum cacheable prompt length. (Prices are `daemon.prices`'.)

Source: ../shared/docs/anthropic-messages-notes.md §1.4, §4.2, §6. Unknown models
get conservative defaults: no system messages (nudges take the user-note path).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "claude-opus-5-5"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    system_messages: bool
    min_cache_tokens: int


CATALOG: dict[str, ModelInfo] = {
    "claude-opus-5-5": ModelInfo(True, 512),
    "claude-fable-5-1": ModelInfo(True, 512),
    "claude-mythos-5-1": ModelInfo(True, 512),
    "claude-opus-5": ModelInfo(True, 512),
    "claude-fable-5": ModelInfo(True, 512),
    "claude-mythos-5": ModelInfo(True, 512),
    "claude-opus-4-8": ModelInfo(True, 1024),
    "claude-sonnet-5": ModelInfo(False, 1024),
}

_UNKNOWN = ModelInfo(False, 1024)


def model_info(model: str) -> ModelInfo:
    return CATALOG.get(model, _UNKNOWN)
