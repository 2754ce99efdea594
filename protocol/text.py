"""Text safe to put on a terminal: the characters a terminal would act on, made visible.

What the model writes, what a tool returns (a file it read, a command's output), a
nudge's text and the names and tasks clients send all reach someone's terminal through
the CLI, the dashboard and the daemon's log. A terminal obeys some characters instead
of showing them: ESC starts sequences that retitle the window, clear the screen or move
the cursor (C1 CSI, U+009B, does too); CR returns to the start of the line to overwrite
it; bidi overrides reorder what follows (Trojan Source). Each is shown as the escape a
Python string literal would use (`\\x1b`, `\\r`, `\\u202e`), readable in any font and
copyable. A backslash is left alone, so the functions are idempotent and a text that
already spells `\\x1b` reads the same as one that held ESC: this is for reading, not an
encoding (`--json` and the API carry the exact text).

Characters made visible: C0 controls (U+0000-U+001F), DEL, C1 controls
(U+0080-U+009F), the bidi embeddings, overrides and isolates (U+202A-U+202E,
U+2066-U+2069) and the line and paragraph separators (U+2028, U+2029). Multi-line text
(a message, a tool's output) keeps its newlines and tabs; a single-line field (a name,
a table cell, a log value) shows them as `\\n` and `\\t` too.

Standard library only, on purpose: the CLI, the dashboard and the daemon's log
formatter share it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_ACTIVE = (
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    return _SHORT.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_ONE_LINE = {code: _escape(code) for code in _ACTIVE}
_LINES = {code: shown for code, shown in _ONE_LINE.items() if code not in (0x09, 0x0A)}
#: Inside a JSON string `\u009b` means the same as a raw U+009B; outside strings JSON
#: allows only ASCII, and tab, LF and CR there are whitespace between tokens.
_JSON = {code: f"\\u{code:04x}" for code in _ACTIVE if code not in (0x09, 0x0A, 0x0D)}


def _escaper(table: dict[int, str]) -> Callable[[str], str]:
    """`table` applied to a text. Most texts (a table cell, a name) hold none of its
    characters, which `str.isprintable` tells in a twentieth of the time `translate`
    takes (`steer ls` of a thousand sessions has ten thousand cells). `str.translate` is
    quickest on ASCII but takes about 80 ms a megabyte of other text, where a regex
    finds the few characters to replace in a few milliseconds."""
    pattern = re.compile("[" + "".join(re.escape(chr(code)) for code in table) + "]")

    def escape(text: str) -> str:
        if text.isprintable():  # no active character: they are all unprintable
            return text
        if text.isascii():
            return text.translate(table)
        return pattern.sub(lambda found: table[ord(found.group())], text)

    return escape


_visible, _visible_lines, _safe_json = _escaper(_ONE_LINE), _escaper(_LINES), _escaper(_JSON)


def visible(text: str) -> str:
    """A single-line field: every active character escaped, newlines and tabs too."""
    return _visible(text)


def visible_lines(text: str) -> str:
    """Multi-line text: newlines and tabs kept, every other active character escaped."""
    return _visible_lines(text)


def safe_json(text: str) -> str:
    """JSON text with every active character inside its strings written as a `\\u`
    escape: the same JSON value, safe to print. (`json.dumps` escapes C0 controls but
    leaves DEL, C1 and bidi characters raw unless `ensure_ascii`; pydantic's JSON never
    escapes them.)"""
    return _safe_json(text)


def columns(cells: Sequence[Sequence[str]]) -> str:
    """Rows of cells as text columns padded to their widest cell, each cell shown with
    its controls visible (a table of the CLI's)."""
    rows = [[visible(c) for c in row] for row in cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
