"""Regular expressions the model writes, compiled with RE2 and matched line by line.

Python's `re` backtracks: `(a+)+$` over a 28-byte line takes it about 25 s, holding the
GIL all along, so even from a worker thread it froze the daemon. RE2 matches in time
linear in the text and releases the GIL while it scans. Its syntax is Python's without
backreferences and lookaround (and `\\Z` is spelled `\\z`); a pattern that uses them is
refused with a message that says so, never handed to `re` instead.

`LinePattern.lines` finds the matching lines of a chunk of whole lines with one RE2 scan
per hit rather than one call per line: multi-line, so ^ and $ match at the ends of each
line, and never_nl, so no match spans a newline. A pattern that could still tell a line
from the chunk around it (\\A, \\z, \\C, or a flag group that clears m) is matched one
line at a time instead: the same answers, more slowly.
"""

from __future__ import annotations

from collections.abc import Iterator

import re2

from daemon.tools.errors import ToolError

#: Found loosely, in the pattern's source: a false alarm costs only speed.
_CHUNK_UNSAFE = re2.compile(r"\\[ACz]|\(\?[a-zA-Z]*-")

#: RE2's messages for the syntax it leaves out on purpose, and what to tell the model.
_LOOKAHEAD = "lookahead ((?=...), (?!...)) is not supported"
_LOOKBEHIND = "lookbehind ((?<=...), (?<!...)) is not supported"
_BACKREFERENCES = "backreferences (\\1, (?P=name)) are not supported"
_UNSUPPORTED = (
    ("invalid perl operator: (?=", _LOOKAHEAD),
    ("invalid perl operator: (?!", _LOOKAHEAD),
    ("invalid perl operator: (?<=", _LOOKBEHIND),
    ("invalid perl operator: (?<!", _LOOKBEHIND),
    ("invalid escape sequence: \\Z", "\\Z is not supported; use $ for the end of a line"),
)
_BACKREFERENCE = re2.compile(r"^invalid escape sequence: \\[1-9]")
_NAMED_BACKREFERENCE = "invalid perl operator: (?P"  # RE2 quotes no further than that


def options(*, never_nl: bool = False, dot_nl: bool = False) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print every bad pattern to stderr
    opts.never_capture = True  # nobody reads groups: the scan needs no submatch engine
    opts.never_nl = never_nl
    opts.dot_nl = dot_nl
    return opts


def reason(exc: re2.error) -> str:
    """RE2's message, which the binding hands over as bytes."""
    message = exc.args[0] if exc.args else ""
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


class LinePattern:
    """A search pattern, matched against each line of UTF-8 text on its own."""

    __slots__ = ("_per_line", "_regex")

    def __init__(self, pattern: str) -> None:
        line_options = options(never_nl=True)
        try:
            # The bare pattern first, so that an error quotes only what the model wrote.
            re2.compile(pattern, line_options)
            self._regex = re2.compile(f"(?m){pattern}", line_options)
        except re2.error as exc:
            raise ToolError(_describe(pattern, reason(exc))) from None
        self._per_line = _CHUNK_UNSAFE.search(pattern) is not None

    def lines(self, chunk: bytes) -> Iterator[tuple[int, int]]:
        """(start, end) of each matching line in `chunk`, in order; `end` is before the \\n.

        `chunk` holds whole lines separated by \\n; only the last may lack its newline.
        """
        if self._per_line:
            yield from self._each_line(chunk)
            return
        size = len(chunk)
        pos = 0
        while pos <= size and (hit := self._regex.search(chunk, pos)) is not None:
            at = hit.start()
            if at == size and (not chunk or chunk.endswith(b"\n")):
                return  # an empty match past the last line
            start = chunk.rfind(b"\n", 0, at) + 1
            end = chunk.find(b"\n", at)
            end = size if end == -1 else end
            yield start, end
            pos = end + 1

    def _each_line(self, chunk: bytes) -> Iterator[tuple[int, int]]:
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            end = len(chunk) if end == -1 else end
            if self._regex.search(chunk[start:end]) is not None:
                yield start, end
            start = end + 1


def _describe(pattern: str, why: str) -> str:
    problem = next((says for prefix, says in _UNSUPPORTED if why.startswith(prefix)), None)
    if _BACKREFERENCE.search(why) or (why == _NAMED_BACKREFERENCE and "(?P=" in pattern):
        problem = _BACKREFERENCES
    if problem is None:
        return f"invalid regular expression {pattern!r}: {why}"
    return (
        f"unsupported regular expression {pattern!r}: {problem}. search uses RE2 syntax,"
        " which matches in linear time and so has no lookaround or backreferences"
    )
