"""What steer knows about each model: mid-conversation system message support,
minimum cacheable prompt length, and prices (USD per million tokens).

Source: ../shared/docs/anthropic-messages-notes.md §1.4, §4.2, §6. Unknown models
get conservative defaults: no system messages (nudges take the user-note path),
Opus-5.5 prices, so cost is never silently zero.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "claude-opus-5-5"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    system_messages: bool
    min_cache_tokens: int
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


CATALOG: dict[str, ModelInfo] = {
    "claude-opus-5-5": ModelInfo(True, 512, 4, 20, 5, 8, 0.20),
    "claude-fable-5-1": ModelInfo(True, 512, 10, 50, 12.5, 20, 0.25),
    "claude-mythos-5-1": ModelInfo(True, 512, 10, 50, 12.5, 20, 0.25),
    "claude-opus-5": ModelInfo(True, 512, 5, 25, 6.25, 10, 0.50),
    "claude-fable-5": ModelInfo(True, 512, 10, 50, 12.5, 20, 1.00),
    "claude-mythos-5": ModelInfo(True, 512, 10, 50, 12.5, 20, 1.00),
    "claude-opus-4-8": ModelInfo(True, 1024, 5, 25, 6.25, 10, 0.50),
    "claude-sonnet-5": ModelInfo(False, 1024, 3, 15, 3.75, 6, 0.30),
}

_UNKNOWN = ModelInfo(False, 1024, 4, 20, 5, 8, 0.20)


def model_info(model: str) -> ModelInfo:
    return CATALOG.get(model, _UNKNOWN)


def cost_usd(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_input_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> float:
    info = model_info(model)
    micro = (
        input_tokens * info.input
        + output_tokens * info.output
        + cache_read_input_tokens * info.cache_read
        + cache_write_5m_tokens * info.cache_write_5m
        + cache_write_1h_tokens * info.cache_write_1h
    )
    return micro / 1_000_000
