"""The nudge stream entry and the session-name rule, stated once.

A nudge travels as a flat Redis stream entry, every field a string. Two programs write
it: the daemon (`protocol.nudges.Nudge.to_fields`) and the `nudge` command, which must
start in a few milliseconds and so may not import pydantic. One program reads it: the
daemon's nudge intake, which must survive whatever lands on the stream, since anyone
with access to Redis can XADD to it. This module serves all three, so it imports
nothing at run time, not even `typing` (3.5 ms, twice what the rest of the `nudge`
command imports), whence the `TYPE_CHECKING = False` idiom below, which mypy honours.

Each rule is a `*_problem` function that returns what is wrong as a sentence for a
person, or None; the pydantic models, the `nudge` command and `decode_nudge_fields`
each wrap that sentence in their own kind of error. `decode_nudge_fields` is the whole
check of an entry read back: it returns the fields typed, or raises `InvalidEntry`,
whatever the entry holds.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TypeAlias

    #: Field names and values as a Redis client returns them: bytes, or str when it
    #: decodes. (Mapping is invariant in its key, hence the three forms.)
    RawFields: TypeAlias = (
        Mapping[str, bytes | str] | Mapping[bytes, bytes | str] | Mapping[bytes | str, bytes | str]
    )

#: Of UTF-8, the largest nudge text.
MAX_NUDGE_BYTES = 16 * 1024
MAX_AUTHOR_CHARS = 64
#: Nudge ids, session ids and agent ids.
MAX_ID_CHARS = 64
#: No field of an entry is larger than the largest text.
MAX_FIELD_BYTES = MAX_NUDGE_BYTES

#: steer: next boundary; redirect: interrupt now, then deliver; queue: when the turn ends.
#: (`protocol.nudges.NudgeMode` is the same as a type; a test holds them equal.)
NUDGE_MODES = ("steer", "redirect", "queue")
DEFAULT_MODE = "steer"
DEFAULT_AUTHOR = "operator"

#: The fields every entry has. `sent_at` is Unix time in seconds, as `repr(float)`.
REQUIRED_FIELDS = ("nudge_id", "session", "text", "sent_at")
#: The fields an entry may leave out: `agent` absent or "" addresses the root agent;
#: `standing` is "1" for a standing nudge (`nudge --all`), absent or "0" otherwise.
#: A rule (a standing nudge the daemon also checks every written file against) has
#: one of `rule_regex` (an RE2 pattern) or `rule_cmd` (a shell command given the
#: file's path), and `rule_veto` "1" when a violating write_file/edit_file is refused.
OPTIONAL_FIELDS = ("agent", "mode", "author", "standing", "rule_regex", "rule_cmd", "rule_veto")
MAX_FIELDS = len(REQUIRED_FIELDS) + len(OPTIONAL_FIELDS)
_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
#: What `repr(float)` writes for a finite number; `float()` alone would also take
#: "inf", "nan", "1_0", spaces and non-ASCII digits.
_NUMBER_CHARS = frozenset("0123456789.eE+-")
_INFINITY = float("inf")  # `math` would cost a third of a millisecond

MAX_NAME_CHARS = 64
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
#: The name rule as a JSON Schema pattern, for editor plugins (a test holds it equal to
#: NAME_CHARS).
NAME_PATTERN = "^[A-Za-z0-9_.-]+$"
NAME_RULE = (
    "a name may use ASCII letters, digits, '.', '_' and '-' (no spaces), "
    f"at most {MAX_NAME_CHARS} characters"
)

STANDING_HAS_NO_AGENT = "a standing nudge addresses a whole session, not one agent"
#: A rule's pattern or command, in characters.
MAX_RULE_CHARS = 1_024
RULE_IS_STANDING = "a rule is a standing nudge: it holds for every agent of the session"
ONE_RULE = "a rule is a regex or a command, not both"
VETO_NEEDS_RULE = "rule_veto applies to a rule (rule_regex or rule_cmd)"


class InvalidEntry(ValueError):
    """A nudge stream entry (or a value meant for one) that breaks a rule of this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def name_problem(name: str) -> str | None:
    if not 0 < len(name) <= MAX_NAME_CHARS or not NAME_CHARS.issuperset(name):
        return NAME_RULE
    return None


def closed_reason(status: str, subagent: bool) -> str | None:
    """Why an agent takes no more nudges, if it is over: vetoed, or a subagent whose
    parent already has its report (done or failed). The daemon's core and the `nudge`
    command, which reads the agent's status from Redis, refuse with this sentence."""
    if status == "vetoed":
        return "the agent was vetoed"
    if subagent and status in ("done", "failed"):
        return f"the subagent has {status} and reported back; steer its parent"
    return None


def text_problem(text: str) -> str | None:
    """Not blank, at most MAX_NUDGE_BYTES of UTF-8."""
    if _blank(text):
        return "the text is empty"
    size = _utf8_size(text)
    if size is None:
        return "the text is not valid UTF-8"
    if size > MAX_NUDGE_BYTES:
        return f"the text is {size} bytes; the limit is {MAX_NUDGE_BYTES}"
    return None


#: What the JSON Schema's `\S` pattern (ECMA-262 regexes) counts as white space, so the
#: schema and the checks below agree on what is blank (`str.isspace` differs a little).
_WHITE = frozenset(
    "\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


def _blank(value: str) -> bool:
    return all(c in _WHITE for c in value)


def author_problem(author: str) -> str | None:
    if _blank(author):
        return "the author is empty"
    if len(author) > MAX_AUTHOR_CHARS:
        return f"the author is over {MAX_AUTHOR_CHARS} characters"
    return None


def id_problem(field: str, value: str) -> str | None:
    """A nudge, session or agent id: 1 to MAX_ID_CHARS characters."""
    if not value:
        return f"the {field} is empty"
    if len(value) > MAX_ID_CHARS:
        return f"the {field} is over {MAX_ID_CHARS} characters"
    return None


def mode_problem(mode: str) -> str | None:
    if mode not in NUDGE_MODES:
        return f"the mode is {_shown(mode)}, not one of {', '.join(NUDGE_MODES)}"
    return None


def rule_problem(regex: str | None, cmd: str | None, veto: bool, standing: bool) -> str | None:
    """A rule's fields: one of a pattern RE2 compiles or a command, on a standing nudge.

    RE2 is imported here, on first use, not with the module: the `nudge` command pays
    for it only when it sends a rule."""
    if regex is not None and cmd is not None:
        return ONE_RULE
    rule = regex if regex is not None else cmd
    if rule is None:
        return VETO_NEEDS_RULE if veto else None
    what = "rule regex" if regex is not None else "rule command"
    if _blank(rule):
        return f"the {what} is empty"
    if len(rule) > MAX_RULE_CHARS:
        return f"the {what} is over {MAX_RULE_CHARS} characters"
    if _utf8_size(rule) is None or "\x00" in rule:
        return f"the {what} is not valid text"
    if not standing:
        return RULE_IS_STANDING
    if regex is not None:
        import re2

        options = re2.Options()
        options.log_errors = False
        try:
            re2.compile(regex, options)
        except Exception as exc:  # re2.error, or whatever the binding raises on odd input
            why = exc.args[0] if exc.args else exc
            why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
            return f"the rule regex does not compile (RE2 syntax: no lookaround): {why}"
    return None


def sent_at_problem(sent_at: float) -> str | None:
    """A finite, non-negative Unix time: JSON has no infinity or NaN to store."""
    if not 0 <= sent_at < _INFINITY:  # NaN compares false: refused too
        return f"sent_at is {sent_at!r}, not a finite number of seconds since 1970"
    return None


def nudge_fields(
    *,
    nudge_id: str,
    session: str,
    agent: str | None,
    mode: str,
    text: str,
    author: str,
    sent_at: float,
    standing: bool,
    rule_regex: str | None = None,
    rule_cmd: str | None = None,
    rule_veto: bool = False,
) -> dict[str, str]:
    """The stream entry of a nudge (unchecked: `decode_nudge_fields` checks it)."""
    fields = {
        "nudge_id": nudge_id,
        "session": session,
        "agent": agent or "",
        "mode": mode,
        "text": text,
        "author": author,
        "sent_at": repr(sent_at),
    }
    if standing:
        fields["standing"] = "1"
    if rule_regex is not None:
        fields["rule_regex"] = rule_regex
    if rule_cmd is not None:
        fields["rule_cmd"] = rule_cmd
    if rule_veto:
        fields["rule_veto"] = "1"
    return fields


def decode_nudge_fields(raw: RawFields) -> dict[str, object]:
    """The fields of a nudge stream entry, typed as `protocol.nudges.Nudge` takes them.

    Raises InvalidEntry, and nothing else, unless the entry breaks no rule: bytes are
    decoded as strict UTF-8, sizes are checked before anything is decoded, and every
    field must be known.
    """
    if len(raw) > MAX_FIELDS:
        raise InvalidEntry(f"the entry has {len(raw)} fields; a nudge has at most {MAX_FIELDS}")
    fields: dict[str, str] = {}
    for raw_name, raw_value in raw.items():
        name = _decoded(raw_name, "a field name")
        if name not in _FIELDS:
            raise InvalidEntry(f"unknown field {_shown(name)}")
        if name in fields:
            raise InvalidEntry(f"the field {name} appears twice")
        fields[name] = _decoded(raw_value, f"the {name}")
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise InvalidEntry(f"missing field{'s' * (len(missing) > 1)} {', '.join(missing)}")
    agent = fields.get("agent", "")
    mode = fields.get("mode", DEFAULT_MODE)
    author = fields.get("author", DEFAULT_AUTHOR)
    standing = fields.get("standing", "0")
    rule_veto = fields.get("rule_veto", "0")
    problem = (
        id_problem("nudge_id", fields["nudge_id"])
        or id_problem("session", fields["session"])
        or (id_problem("agent", agent) if agent else None)
        or mode_problem(mode)
        or text_problem(fields["text"])
        or author_problem(author)
        or (None if standing in ("0", "1") else f"standing is {_shown(standing)}, not 1 or 0")
        or (STANDING_HAS_NO_AGENT if standing == "1" and agent else None)
        or (None if rule_veto in ("0", "1") else f"rule_veto is {_shown(rule_veto)}, not 1 or 0")
        or rule_problem(
            fields.get("rule_regex"), fields.get("rule_cmd"), rule_veto == "1", standing == "1"
        )
    )
    if problem:
        raise InvalidEntry(problem)
    rule: dict[str, object] = {n: fields[n] for n in ("rule_regex", "rule_cmd") if n in fields}
    if rule and rule_veto == "1":
        rule["rule_veto"] = True
    return rule | {
        "nudge_id": fields["nudge_id"],
        "session": fields["session"],
        "agent": agent or None,
        "mode": mode,
        "text": fields["text"],
        "author": author,
        "sent_at": _sent_at(fields["sent_at"]),
        "standing": standing == "1",
    }


def _decoded(value: object, what: str) -> str:
    """VALUE as text: at most MAX_FIELD_BYTES of valid UTF-8."""
    if isinstance(value, bytes):
        if len(value) > MAX_FIELD_BYTES:
            raise InvalidEntry(f"{what} is over {MAX_FIELD_BYTES} bytes")
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise InvalidEntry(f"{what} is not valid UTF-8") from None
    if isinstance(value, str):
        # A str of N characters has at least N bytes: the cheap test first.
        size = MAX_FIELD_BYTES + 1 if len(value) > MAX_FIELD_BYTES else _utf8_size(value)
        if size is None:
            raise InvalidEntry(f"{what} is not valid UTF-8")
        if size > MAX_FIELD_BYTES:
            raise InvalidEntry(f"{what} is over {MAX_FIELD_BYTES} bytes")
        return value
    raise InvalidEntry(f"{what} is a {type(value).__name__}, not text")


def first_bytes(text: str, limit: int) -> str:
    """The longest start of `text` that is at most `limit` bytes of UTF-8."""
    return text.encode(errors="ignore")[:limit].decode(errors="ignore")


def last_bytes(text: str, limit: int) -> str:
    """The longest end of `text` that is at most `limit` bytes of UTF-8."""
    encoded = text.encode(errors="ignore")
    return encoded[max(0, len(encoded) - limit) :].decode(errors="ignore")


def _utf8_size(text: str) -> int | None:
    """The size of TEXT in UTF-8, or None if it has lone surrogates (no UTF-8 for them)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None


def _sent_at(value: str) -> float:
    if not value or not _NUMBER_CHARS.issuperset(value):
        raise InvalidEntry(f"sent_at is {_shown(value)}, not a number")
    try:
        sent_at = float(value)
    except ValueError:
        raise InvalidEntry(f"sent_at is {_shown(value)}, not a number") from None
    problem = sent_at_problem(sent_at)
    if problem:
        raise InvalidEntry(problem)
    return sent_at


def _shown(value: str) -> str:
    """VALUE quoted for an error message, cut short: it may be 16 KiB of anything."""
    return repr(value[:32] + "…") if len(value) > 32 else repr(value)
