"""protocol/text.py: which characters are made visible, how, and what is left alone."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from protocol.text import safe_json, visible, visible_lines

ACTIVE = [
    *map(chr, range(0x20)),
    "\x7f",
    *map(chr, range(0x80, 0xA0)),
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\u2028",
    "\u2029",
]


def test_each_active_character_becomes_a_python_style_escape() -> None:
    assert visible("\x1b]0;PWNED\x07\x1b[2J") == r"\x1b]0;PWNED\x07\x1b[2J"
    assert visible("a\rb\nc\td\x00\x7f\x9b\u202e\u2066\u2028") == (
        r"a\rb\nc\td\x00\x7f\x9b\u202e\u2066\u2028"
    )
    for char in ACTIVE:
        shown = visible(char)
        assert shown.startswith("\\") and shown.isprintable() and shown.isascii(), repr(char)
        assert visible(f"é{char}") == f"é{shown}"  # non-ASCII text takes another path


def test_multi_line_text_keeps_its_newlines_and_tabs_only() -> None:
    assert visible_lines("one\n\ttwo\r\nthree\x1b[2J") == "one\n\ttwo\\r\nthree\\x1b[2J"


def test_printable_text_and_backslashes_are_left_alone() -> None:
    text = r"naïve 日本 🙂 [bold]x[/bold] C:\path \x1b é \u00e9"
    assert visible(text) == visible_lines(text) == text


@given(st.text())
def test_nothing_active_is_left_and_it_is_idempotent(text: str) -> None:
    shown = visible(text)
    assert not set(shown) & set(ACTIVE)
    assert visible(shown) == shown
    assert not set(visible_lines(text)) & (set(ACTIVE) - {"\n", "\t"})


@given(st.recursive(st.text() | st.integers(), lambda inner: st.lists(inner), max_leaves=8))
def test_safe_json_is_the_same_json_value_with_nothing_active(value: object) -> None:
    for dumped in (json.dumps(value, ensure_ascii=False), json.dumps(value, indent=2)):
        safe = safe_json(dumped)
        assert json.loads(safe) == value
        assert not set(safe) & (set(ACTIVE) - {"\n"})
