"""One object per content: the tool lists and system prompts agents share, held once.

Every agent of a kind carries the same tool schemas (about 5 KB of JSON, three times
that as Python objects), and the agents of one workdir the same system prompt. An
`AgentConfig` field marked `interned_field` keeps the one object this process holds for
its content instead of a copy per agent. Content is named by its digest: the SHA-256 of
its compact JSON, the very text `daemon.config_store` keeps as a blob in Redis.

The objects are shared, so nobody may change them (no agent code does: a request takes
`list(config.tools)`). The table keeps the most recently used MAX_INTERNED values; one
dropped from it stays correct where it is used, it is only no longer shared with
configs made later.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, TypeVar

from pydantic import ValidatorFunctionWrapHandler, WrapValidator

#: Distinct values kept: the tool sets (a handful) and a system prompt per workdir.
MAX_INTERNED = 4096

T = TypeVar("T")

_values: OrderedDict[str, Any] = OrderedDict()
#: id() of every value in `_values` -> its digest (ids of live objects only: an entry
#: leaves with its value, so an id is never reused while it is here).
_digests: dict[int, str] = {}


def encode(value: Any) -> str:
    """The value's compact JSON, key order kept: what is digested and stored."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digest_of(value: Any) -> str:
    """The digest of a value's content (no hashing when it is an interned one)."""
    return _known(value) or digest(encode(value))


def lookup(key: str) -> Any | None:
    """The interned value with this digest, if this process holds one."""
    value = _values.get(key)
    if value is not None:
        _values.move_to_end(key)
    return value


def intern(value: T) -> T:
    """The one object held for `value`'s content (`value` itself if it is the first)."""
    if _known(value) is not None:
        return value
    key = digest(encode(value))
    found = lookup(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    _values[key] = value
    _digests[id(value)] = key
    if len(_values) > MAX_INTERNED:
        _, dropped = _values.popitem(last=False)
        _digests.pop(id(dropped), None)
    return value


def interned_field(kind: type) -> WrapValidator:
    """A pydantic validator that stores the interned object, not a validated copy.

    Content seen before is not validated again: its digest finds the object validated
    then. `kind` is the field's outer type, so a value of another type with the same
    JSON (impossible for str and list, but checked) never stands in for it."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if _known(value) is not None:
            return value
        if isinstance(value, kind):
            try:
                found = lookup(digest(encode(value)))
            except (TypeError, ValueError):  # not JSON: the handler says why
                found = None
            if isinstance(found, kind):
                return found
        return intern(handler(value))

    return WrapValidator(validate)


def _known(value: Any) -> str | None:
    key = _digests.get(id(value))
    return key if key is not None and _values.get(key) is value else None
