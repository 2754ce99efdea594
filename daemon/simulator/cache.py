"""The prompt-cache model: breakpoints, entries with TTLs, and the usage they imply.

Rules (notes §4.1), applied to the positions of `tokens.render_prompt`:

- Breakpoints are the blocks carrying ``cache_control`` (tools, system blocks,
  message blocks) plus the top-level automatic marker, which lands on the last
  markable block (walking back over empty text, thinking and turn-scoped blocks).
  More than 4 is a 400, as is an automatic marker whose TTL differs from an explicit
  one already on that block, or a 1h breakpoint after a 5m one.
- Reads: from each breakpoint the cache looks back through at most 20 lookback
  steps (the breakpoint's own included) for an unexpired entry of the same model
  written by an earlier request. The longest hit is read.
- Writes happen only at breakpoints whose prefix reaches the model's minimum
  cacheable length; below it nothing is cached. An entry lives 5 minutes (or 1 hour
  with ``"ttl": "1h"``) from the start of the request that wrote or last read it.
- Usage: ``cache_read`` = tokens up to the hit; ``cache_creation`` = tokens from the
  hit to the last cacheable breakpoint, split by the TTL of the breakpoint that
  covers them; ``input_tokens`` = the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from daemon.catalog import model_info
from daemon.simulator.errors import InvalidRequest
from daemon.simulator.tokens import Position

Ttl = Literal["5m", "1h"]
TTL_SECONDS: dict[Ttl, float] = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
LOOKBACK_STEPS = 20
#: Expired entries are swept after this many writes, so memory follows live entries.
_SWEEP_EVERY = 4096


@dataclass(frozen=True, slots=True)
class Breakpoint:
    position: int
    ttl: Ttl


@dataclass(frozen=True, slots=True)
class CacheUsage:
    input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.ephemeral_5m_input_tokens + self.ephemeral_1h_input_tokens

    def as_usage(self) -> dict[str, object]:
        """The input side of an API ``usage`` object."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": self.ephemeral_1h_input_tokens,
            },
        }


def find_breakpoints(
    positions: Sequence[Position], automatic: dict[str, object] | None
) -> list[Breakpoint]:
    """The request's breakpoints in prompt order; raises the API's 400s."""
    found: dict[int, Breakpoint] = {}
    for index, position in enumerate(positions):
        marker = position.block.get("cache_control")
        if marker is not None:
            found[index] = Breakpoint(index, _ttl(marker, f"{position.path}.cache_control"))
    if automatic is not None:
        ttl = _ttl(automatic, "cache_control")
        target = next((i for i in reversed(range(len(positions))) if positions[i].markable), None)
        if target is not None:
            existing = found.get(target)
            if existing is not None and existing.ttl != ttl:
                raise InvalidRequest(
                    "cache_control: the top-level cache_control ttl differs from the "
                    f"cache_control already on the last block ({positions[target].path})"
                )
            found[target] = Breakpoint(target, ttl)
            if existing is None and len(found) > MAX_BREAKPOINTS:
                raise InvalidRequest(
                    "cache_control: automatic caching needs a free breakpoint slot, but "
                    f"{MAX_BREAKPOINTS} blocks already have cache_control"
                )
    if len(found) > MAX_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    breakpoints = [found[i] for i in sorted(found)]
    for earlier, later in pairwise(breakpoints):
        if earlier.ttl == "5m" and later.ttl == "1h":
            raise InvalidRequest(
                f"{positions[later.position].path}.cache_control: a ttl='1h' cache_control "
                "must not come after a ttl='5m' one"
            )
    return breakpoints


@dataclass(slots=True)
class _Entry:
    ttl: Ttl
    expires_at: float


class PromptCache:
    """Cache entries of every conversation the simulator has seen, keyed by model and hash."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, bytes], _Entry] = {}
        self._writes = 0

    def apply(
        self, model: str, positions: Sequence[Position], breakpoints: Sequence[Breakpoint]
    ) -> CacheUsage:
        """Read, refresh and write entries for one request; return its input usage."""
        now = self._clock()
        total = positions[-1].cumulative_tokens if positions else 0
        hit = self._longest_hit(model, positions, breakpoints, now)
        read = positions[hit].cumulative_tokens if hit is not None else 0
        if hit is not None:
            entry = self._entries[(model, positions[hit].digest)]
            entry.expires_at = now + TTL_SECONDS[entry.ttl]

        minimum = model_info(model).min_cache_tokens
        created: dict[Ttl, int] = {"5m": 0, "1h": 0}
        covered = read
        for breakpoint in breakpoints:
            position = positions[breakpoint.position]
            if position.cumulative_tokens < minimum:
                continue
            if position.cumulative_tokens > covered:
                created[breakpoint.ttl] += position.cumulative_tokens - covered
                covered = position.cumulative_tokens
            self._write(model, position.digest, breakpoint.ttl, now)
        return CacheUsage(
            input_tokens=total - covered,
            cache_read_input_tokens=read,
            ephemeral_5m_input_tokens=created["5m"],
            ephemeral_1h_input_tokens=created["1h"],
        )

    def _longest_hit(
        self,
        model: str,
        positions: Sequence[Position],
        breakpoints: Sequence[Breakpoint],
        now: float,
    ) -> int | None:
        best: int | None = None
        for breakpoint in breakpoints:
            oldest_step = positions[breakpoint.position].step - (LOOKBACK_STEPS - 1)
            for index in range(breakpoint.position, -1, -1):
                if positions[index].step < oldest_step or (best is not None and index <= best):
                    break
                entry = self._entries.get((model, positions[index].digest))
                if entry is not None and entry.expires_at > now:
                    best = index
                    break
        return best

    def _write(self, model: str, digest: bytes, ttl: Ttl, now: float) -> None:
        expires_at = now + TTL_SECONDS[ttl]
        entry = self._entries.get((model, digest))
        if entry is None or entry.expires_at < expires_at:
            self._entries[(model, digest)] = _Entry(ttl, expires_at)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}


def _ttl(marker: object, path: str) -> Ttl:
    if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
        raise InvalidRequest(f"{path}.type: Input should be 'ephemeral'")
    ttl: object = marker.get("ttl", "5m")
    if ttl == "1h":
        return "1h"
    if ttl == "5m":
        return "5m"
    raise InvalidRequest(f"{path}.ttl: Input should be '5m' or '1h'")
