"""The finding tools: list_files (by path glob) and search (by regex over contents).

Both walk the workspace through `tree.iter_files`, so they skip the same directories, and
both cap their output and say what was left out. The walks block, so the tool classes run
them in a worker thread, which stops between files (and search between chunks) once
nobody waits for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from daemon.tools.base import ToolInput
from daemon.tools.errors import ToolError
from daemon.tools.limits import Stop, in_thread
from daemon.tools.regex import LinePattern
from daemon.tools.tree import (
    BINARY_SNIFF_BYTES,
    compile_glob,
    iter_files,
    looks_binary,
    open_regular,
)
from daemon.tools.workspace import Workspace

LIST_CAP = 1000
MATCH_CAP = 200
# A minified file can put megabytes on one line; the model needs only where the match is.
MATCH_LINE_CHARS = 300
# How much of a file one RE2 scan covers (extended to the end of its last line).
CHUNK_BYTES = 1 << 20


class ListFiles(ToolInput):
    """List files in the workspace whose paths match a glob, sorted, relative to the root.

    `**` matches any number of directories; `*` and `?` match within one path segment. A
    pattern without `/` matches file names at any depth (`*.py` finds every Python file,
    `src/*.py` only those directly in src). Directories .git, .venv, node_modules,
    __pycache__ and tool caches are skipped. At most 1000 paths are returned.
    """

    tool_name = "list_files"

    pattern: str = Field(default="**/*", min_length=1, description="Glob over file paths.")

    async def run(self, workspace: Workspace) -> str:
        return await in_thread(lambda stop: list_files(stop, workspace, self.pattern))


class Search(ToolInput):
    """Search file contents in the workspace with a regular expression.

    Uses RE2 syntax (Python `re` without backreferences or lookaround), matched against
    each line; start the pattern with (?i) to ignore case. Returns `path:line: text` for
    each matching line, paths relative to the workspace root, at most 200 matches. Binary
    files and the directories list_files skips are ignored.
    """

    tool_name = "search"

    pattern: str = Field(min_length=1, description="Regular expression to look for.")
    path: str = Field(
        default=".", min_length=1, description="File or directory to search, relative to the root."
    )
    glob: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Only search files matching this glob, as in list_files (e.g. *.py).",
    )

    async def run(self, workspace: Workspace) -> str:
        return await in_thread(
            lambda stop: search(stop, workspace, self.pattern, self.path, self.glob)
        )


def list_files(stop: Stop, workspace: Workspace, pattern: str = "**/*") -> str:
    matches = compile_glob(pattern)
    found: list[str] = []
    for path in iter_files(workspace, workspace.root):
        stop.check()
        if matches(rel := workspace.relative(path)):
            found.append(rel)
    found.sort()
    if not found:
        return f"no files match {pattern}"
    listing = "\n".join(found[:LIST_CAP])
    if len(found) <= LIST_CAP:
        return listing
    left_out = len(found) - LIST_CAP
    note = f"[showing {LIST_CAP} of {len(found)} files, {left_out} left out; narrow the pattern]"
    return f"{listing}\n{note}"


def search(
    stop: Stop, workspace: Workspace, pattern: str, path: str = ".", glob: str | None = None
) -> str:
    regex = LinePattern(pattern)
    start = workspace.resolve(path)
    if not start.exists():
        raise ToolError(f"no such file or directory: {path}")
    files = _files_to_search(workspace, start, compile_glob(glob) if glob else None)
    results: list[str] = []
    for file in files:
        for line_no, text in _matching_lines(stop, file, regex):
            if len(results) == MATCH_CAP:
                results.append(
                    f"[stopped after {MATCH_CAP} matches; narrow the pattern, path or glob]"
                )
                return "\n".join(results)
            results.append(f"{workspace.relative(file)}:{line_no}: {text}")
    if not results:
        return f"no matches for {pattern} in {path}"
    return "\n".join(results)


def _files_to_search(
    workspace: Workspace, start: Path, matches: Callable[[str], bool] | None
) -> Iterator[Path]:
    if start.is_file():  # an explicitly named file is searched whatever the glob says
        yield start
        return
    for file in iter_files(workspace, start):
        if matches is None or matches(workspace.relative(file)):
            yield file


def _matching_lines(stop: Stop, file: Path, regex: LinePattern) -> Iterator[tuple[int, str]]:
    """Number and text (cut to MATCH_LINE_CHARS) of each matching line; nothing for binary files."""
    stop.check()
    try:
        with open_regular(file) as f:
            first = f.read(CHUNK_BYTES)
            if looks_binary(first[:BINARY_SNIFF_BYTES]):
                return
            line_no = 1  # of the chunk's first line
            for chunk in _line_chunks(f, first):
                counted = 0  # line_no is the number of the line that starts here
                for start, end in regex.lines(chunk):
                    line_no += chunk.count(b"\n", counted, start)
                    counted = start
                    yield line_no, _shown(chunk[start:end])
                line_no += chunk.count(b"\n", counted)
                stop.check()
    except OSError:
        return  # an unreadable file should not abort the whole search


def _line_chunks(f: BinaryIO, first: bytes) -> Iterator[bytes]:
    """The rest of `f`, from `first` on, in chunks of whole lines as UTF-8.

    Lines end at \n; a \r before it belongs to the line ending. Bytes that are not UTF-8
    become U+FFFD, as they would when decoded for display.
    """
    pending: list[bytes] = []  # the start of a line that has not ended yet
    block = first
    while block:
        cut = block.rfind(b"\n") + 1
        if cut:
            yield _normalized(b"".join([*pending, block[:cut]]))
            pending = [block[cut:]]
        else:
            pending.append(block)
        block = f.read(CHUNK_BYTES)
    rest = b"".join(pending)
    if rest:
        yield _normalized(rest)


def _normalized(chunk: bytes) -> bytes:
    try:
        chunk.decode()
    except UnicodeDecodeError:
        chunk = chunk.decode(errors="replace").encode()
    return chunk.replace(b"\r\n", b"\n")


def _shown(line: bytes) -> str:
    # Up to 4 bytes per character: decoding this much is enough to fill MATCH_LINE_CHARS,
    # and a line of megabytes (a minified file) is not decoded whole.
    text = line[: 4 * (MATCH_LINE_CHARS + 1)].decode(errors="replace").rstrip("\r")
    if len(text) > MATCH_LINE_CHARS:
        return text[:MATCH_LINE_CHARS] + "…"
    return text
