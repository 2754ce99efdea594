"""Cache diagnostics (notes §2): request fingerprints and the earliest divergence.

A request that includes ``diagnostics`` leaves a fingerprint (hashes and token
estimates, no content) under its response id. A later request naming that id in
``diagnostics.previous_message_id`` is compared with it, in prompt order:
model/speed → tools → system → other settings (``unavailable``) → messages, where
the previous messages must be a prefix of the new ones. ``cache_missed_input_tokens``
is the previous prompt's tokens from the divergence on.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from daemon.simulator.request import MessagesRequest
from daemon.simulator.tokens import Prompt, canonical_json

#: Fingerprints kept (oldest evicted first): the API's retention is short too.
DEFAULT_RETENTION = 20_000


@dataclass(frozen=True, slots=True)
class Fingerprint:
    model: str
    speed: str | None
    tools_digest: str
    system_digest: str
    settings_digest: str
    tools_tokens: int
    system_tokens: int
    message_digests: tuple[str, ...]
    message_tokens: tuple[int, ...]
    total_tokens: int

    @classmethod
    def of(cls, request: MessagesRequest, prompt: Prompt) -> Fingerprint:
        settings = canonical_json({**request.settings, "betas": sorted(request.betas)})
        return cls(
            model=request.model,
            speed=request.speed,
            tools_digest=prompt.tools_digest,
            system_digest=prompt.system_digest,
            settings_digest=hashlib.sha256(settings.encode()).hexdigest(),
            tools_tokens=prompt.tools_tokens,
            system_tokens=prompt.system_tokens,
            message_digests=prompt.message_digests,
            message_tokens=prompt.message_tokens,
            total_tokens=prompt.total_tokens,
        )


def cache_miss_reason(previous: Fingerprint, current: Fingerprint) -> dict[str, object] | None:
    """The earliest divergence of ``current`` from ``previous``, or None if it only appends."""
    if (previous.model, previous.speed) != (current.model, current.speed):
        return _missed("model_changed", previous.total_tokens)
    if previous.tools_digest != current.tools_digest:
        return _missed("tools_changed", previous.total_tokens)
    if previous.system_digest != current.system_digest:
        return _missed("system_changed", previous.total_tokens - previous.tools_tokens)
    if previous.settings_digest != current.settings_digest:
        return {"type": "unavailable"}
    common = 0
    for before, now in zip(previous.message_digests, current.message_digests, strict=False):
        if before != now:
            break
        common += 1
    if common == len(previous.message_digests):
        return None
    kept = (
        previous.message_tokens[common - 1]
        if common
        else previous.tools_tokens + previous.system_tokens
    )
    return _missed("messages_changed", previous.total_tokens - kept)


def _missed(kind: str, tokens: int) -> dict[str, object]:
    return {"type": kind, "cache_missed_input_tokens": max(0, tokens)}


class DiagnosticsStore:
    """Fingerprints by response id, bounded."""

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        self._retention = retention
        self._fingerprints: OrderedDict[str, Fingerprint] = OrderedDict()

    def diagnose(
        self, request: MessagesRequest, fingerprint: Fingerprint
    ) -> dict[str, object] | None:
        """The response's ``diagnostics`` value for ``request`` (None is JSON null)."""
        if not request.wants_diagnostics or request.previous_message_id is None:
            return None
        previous = self._fingerprints.get(request.previous_message_id)
        if previous is None:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        reason = cache_miss_reason(previous, fingerprint)
        return None if reason is None else {"cache_miss_reason": reason}

    def remember(self, message_id: str, fingerprint: Fingerprint) -> None:
        self._fingerprints[message_id] = fingerprint
        while len(self._fingerprints) > self._retention:
            self._fingerprints.popitem(last=False)
