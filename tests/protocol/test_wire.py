"""protocol.wire: a nudge stream entry is untrusted input. Every way an entry can be
wrong is refused with `InvalidEntry` (and nothing else, under Hypothesis); every valid
nudge survives the trip through the stream; the session-name rule is one rule; and
`import protocol.wire` stays free of pydantic and typing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol import wire
from protocol.nudges import Nudge, NudgeMode
from protocol.sessions import StartSession
from protocol.wire import (
    MAX_FIELD_BYTES,
    MAX_NUDGE_BYTES,
    NAME_RULE,
    InvalidEntry,
    decode_nudge_fields,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "nudge_id": "n-1",
    "session": "s-3f2a",
    "agent": "a-7",
    "mode": "queue",
    "text": "no casts",
    "author": "ann",
    "sent_at": "1795221661.25",
}


def as_bytes(fields: Mapping[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def reason(raw: Mapping[Any, Any]) -> str:
    with pytest.raises(InvalidEntry) as caught:
        decode_nudge_fields(raw)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


def test_a_good_entry_decodes_the_same_from_bytes_and_from_text() -> None:
    expected = {
        "nudge_id": "n-1",
        "session": "s-3f2a",
        "agent": "a-7",
        "mode": "queue",
        "text": "no casts",
        "author": "ann",
        "sent_at": 1795221661.25,
        "standing": False,
    }
    assert decode_nudge_fields(GOOD) == expected
    assert decode_nudge_fields(as_bytes(GOOD)) == expected
    assert Nudge.from_fields(as_bytes(GOOD)) == Nudge.model_validate(expected)


def test_optional_fields_have_defaults() -> None:
    required = {k: GOOD[k] for k in wire.REQUIRED_FIELDS}
    nudge = Nudge.from_fields(required | {"standing": "1"})
    assert (nudge.agent, nudge.mode, nudge.author, nudge.standing) == (
        None,
        "steer",
        "operator",
        True,
    )
    assert Nudge.from_fields(required | {"agent": "", "standing": "0"}).agent is None


def test_modes_are_the_same_in_the_model() -> None:
    assert get_args(NudgeMode) == wire.NUDGE_MODES


BAD: list[tuple[str, dict[Any, Any], str]] = [
    ("text not UTF-8", as_bytes(GOOD) | {b"text": b"caf\xe9"}, "the text is not valid UTF-8"),
    ("key not UTF-8", as_bytes(GOOD) | {b"\xff": b"1"}, "a field name is not valid UTF-8"),
    ("lone surrogate", GOOD | {"author": "\udcff"}, "the author is not valid UTF-8"),
    ("not text", GOOD | {"sent_at": 17.0}, "the sent_at is a float, not text"),
    ("no nudge_id", {k: v for k, v in GOOD.items() if k != "nudge_id"}, "missing field nudge_id"),
    (
        "no session, no text",
        {k: v for k, v in GOOD.items() if k not in ("session", "text")},
        "missing fields session, text",
    ),
    ("no sent_at", {k: v for k, v in GOOD.items() if k != "sent_at"}, "missing field sent_at"),
    ("extra field", GOOD | {"priority": "high"}, "unknown field 'priority'"),
    (
        "long extra field",
        GOOD | {"p" * 100: "1"},
        "unknown field 'pppppppppppppppppppppppppppppppp…'",
    ),
    ("twice", as_bytes(GOOD) | {"text": "again"}, "the field text appears twice"),
    (
        "too many fields",
        GOOD | {f"f{i}": "1" for i in range(5)},
        "the entry has 12 fields; a nudge has at most 11",
    ),
    (
        "huge bytes",
        as_bytes(GOOD) | {b"author": b"a" * (MAX_FIELD_BYTES + 1)},
        "the author is over",
    ),
    (
        "huge text",
        GOOD | {"text": "é" * (MAX_FIELD_BYTES // 2 + 1)},
        "the text is over 16384 bytes",
    ),
    ("huge name", {b"n" * (MAX_FIELD_BYTES + 1): b"1"}, "a field name is over 16384 bytes"),
    ("empty text", GOOD | {"text": ""}, "the text is empty"),
    ("blank text", GOOD | {"text": " \n\t"}, "the text is empty"),
    ("empty nudge_id", GOOD | {"nudge_id": ""}, "the nudge_id is empty"),
    ("long session", GOOD | {"session": "s" * 65}, "the session is over 64 characters"),
    ("long agent", GOOD | {"agent": "a" * 65}, "the agent is over 64 characters"),
    ("empty author", GOOD | {"author": ""}, "the author is empty"),
    ("blank author", GOOD | {"author": "  "}, "the author is empty"),
    ("long author", GOOD | {"author": "a" * 65}, "the author is over 64 characters"),
    (
        "bad mode",
        GOOD | {"mode": "shout"},
        "the mode is 'shout', not one of steer, redirect, queue",
    ),
    ("empty mode", GOOD | {"mode": ""}, "the mode is '', not one of"),
    ("bad standing", GOOD | {"standing": "yes"}, "standing is 'yes', not 1 or 0"),
    ("empty standing", GOOD | {"standing": ""}, "standing is '', not 1 or 0"),
    ("standing agent", GOOD | {"standing": "1"}, wire.STANDING_HAS_NO_AGENT),
]
BAD_SENT_AT = [
    "notanumber",
    "",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    " 1",
    "1_000",
    "١٢",  # Arabic-Indic digits: float() takes them
    "1e",
    "--1",
]
NON_FINITE_SENT_AT = ["1e999", "-1e999", "1" + "0" * 400]


@pytest.mark.parametrize(
    ("entry", "message"), [(e, m) for _, e, m in BAD], ids=[i for i, *_ in BAD]
)
def test_every_bad_entry_is_refused_with_a_reason(entry: dict[Any, Any], message: str) -> None:
    assert reason(entry).startswith(message)
    with pytest.raises(InvalidEntry):
        Nudge.from_fields(entry)


@pytest.mark.parametrize("sent_at", BAD_SENT_AT)
def test_sent_at_must_be_a_plain_number(sent_at: str) -> None:
    assert reason(GOOD | {"sent_at": sent_at}).endswith(", not a number")


@pytest.mark.parametrize("sent_at", [*NON_FINITE_SENT_AT, "-1", "-0.5"])
def test_sent_at_must_be_finite_and_not_negative(sent_at: str) -> None:
    assert reason(GOOD | {"sent_at": sent_at}).endswith(
        ", not a finite number of seconds since 1970"
    )


def test_text_limit_is_in_bytes_of_utf8() -> None:
    largest = "é" * (MAX_NUDGE_BYTES // 2)
    assert decode_nudge_fields(GOOD | {"text": largest})["text"] == largest
    assert wire.text_problem(largest + "x") == "the text is 16385 bytes; the limit is 16384"


# Keys: mostly real field names (so that entries get past the name check), as bytes or
# text; values: arbitrary bytes and text, and the values each rule turns on.
FIELD_NAMES = st.sampled_from(wire.REQUIRED_FIELDS + wire.OPTIONAL_FIELDS)
KEYS = st.one_of(
    FIELD_NAMES, FIELD_NAMES.map(str.encode), st.binary(max_size=12), st.text(max_size=12)
)
INTERESTING = st.sampled_from(
    [
        "",
        " ",
        "0",
        "1",
        "-1",
        "1.5",
        "1e999",
        "nan",
        "inf",
        "steer",
        "redirect",
        "queue",
        "a" * 65,
        "\udcff",
    ]
)
VALUES = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    INTERESTING,
    INTERESTING.map(lambda s: s.encode(errors="surrogateescape")),
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(raw: Mapping[Any, Any]) -> None:
    try:
        nudge = Nudge.from_fields(raw)
    except InvalidEntry as exc:
        assert exc.reason
        return
    # Whatever got through is a nudge that makes the trip again unchanged.
    assert Nudge.from_fields(nudge.to_fields()) == nudge
    assert Nudge.from_fields(as_bytes(nudge.to_fields())) == nudge


@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=10))
def test_arbitrary_entries_decode_or_raise_invalid_entry_only(raw: dict[Any, Any]) -> None:
    decodes_or_refuses(raw)


@FUZZ
@given(
    st.fixed_dictionaries(
        {name.encode(): VALUES for name in wire.REQUIRED_FIELDS},
        optional={name.encode(): VALUES for name in wire.OPTIONAL_FIELDS},
    )
)
def test_entries_with_every_required_field_decode_or_raise_invalid_entry_only(
    raw: dict[bytes, Any],
) -> None:
    decodes_or_refuses(raw)


IDS = st.text(min_size=1, max_size=wire.MAX_ID_CHARS)


@FUZZ
@given(
    st.builds(
        Nudge,
        nudge_id=IDS,
        session=IDS,
        agent=st.none() | IDS,
        mode=st.sampled_from(wire.NUDGE_MODES),
        text=st.text(min_size=1, max_size=200).filter(lambda t: not wire.text_problem(t)),
        author=st.text(min_size=1, max_size=64).filter(lambda a: not wire.author_problem(a)),
        sent_at=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        standing=st.just(False),
    )
)
def test_every_valid_nudge_makes_the_trip_through_the_stream(nudge: Nudge) -> None:
    assert Nudge.from_fields(nudge.to_fields()) == nudge
    assert Nudge.from_fields(as_bytes(nudge.to_fields())) == nudge


def test_the_name_pattern_for_editors_is_the_name_rule() -> None:
    import re

    pattern = re.compile(wire.NAME_PATTERN)
    for code in range(0x3000):
        char = chr(code)
        assert bool(pattern.fullmatch(char)) == (char in wire.NAME_CHARS), repr(char)


@pytest.mark.parametrize("name", ["fix-tests", "v1.2_rc", "A", "a" * 64])
def test_good_names(name: str) -> None:
    assert wire.name_problem(name) is None
    assert StartSession(task="t", workdir="/", name=name).name == name


@pytest.mark.parametrize("name", ["my fix", "", "a" * 65, "café", "a/b", "x\n"])
def test_a_bad_name_is_refused_with_a_sentence(name: str) -> None:
    assert wire.name_problem(name) == NAME_RULE
    with pytest.raises(ValidationError) as caught:
        StartSession(task="t", workdir="/", name=name)
    [error] = caught.value.errors()
    assert error["msg"] == (
        "a name may use ASCII letters, digits, '.', '_' and '-' (no spaces), at most 64 characters"
    )


def test_importing_wire_imports_nothing_heavy() -> None:
    """In a fresh interpreter, as the `nudge` command starts: no pydantic, no typing."""
    code = "import sys; before = set(sys.modules); import protocol.wire; "
    code += "print(*sorted(set(sys.modules) - before))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["protocol", "protocol.wire"]


def test_the_package_names_resolve_on_first_use() -> None:
    import importlib

    import protocol

    assert set(protocol.__all__) == set(protocol._HOMES)
    for name in protocol.__all__:
        home = importlib.import_module(protocol._HOMES[name])
        assert getattr(protocol, name) is getattr(home, name)
    with pytest.raises(AttributeError):
        _ = protocol.Nothing  # type: ignore[attr-defined]
