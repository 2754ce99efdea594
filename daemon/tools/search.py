"""The finding tools: list_files (by path glob) and search (by regex over contents).

Both walk the workspace through `tree.iter_files`, so they skip the same directories, and
both cap their output and say what was left out. The walks block, so the tool classes run
them in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from daemon.tools.base import ToolInput
from daemon.tools.errors import ToolError
from daemon.tools.tree import BINARY_SNIFF_BYTES, compile_glob, iter_files, looks_binary
from daemon.tools.workspace import Workspace

LIST_CAP = 1000
MATCH_CAP = 200
# A minified file can put megabytes on one line; the model needs only where the match is.
MATCH_LINE_CHARS = 300


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
        return await asyncio.to_thread(list_files, workspace, self.pattern)


class Search(ToolInput):
    """Search file contents in the workspace with a regular expression.

    Uses Python `re` syntax, matched against each line; start the pattern with (?i) to
    ignore case. Returns `path:line: text` for each matching line, paths relative to the
    workspace root, at most 200 matches. Binary files and the directories list_files skips
    are ignored.
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
        return await asyncio.to_thread(search, workspace, self.pattern, self.path, self.glob)


def list_files(workspace: Workspace, pattern: str = "**/*") -> str:
    matches = compile_glob(pattern)
    found = sorted(
        rel
        for path in iter_files(workspace, workspace.root)
        if matches(rel := workspace.relative(path))
    )
    if not found:
        return f"no files match {pattern}"
    listing = "\n".join(found[:LIST_CAP])
    if len(found) <= LIST_CAP:
        return listing
    left_out = len(found) - LIST_CAP
    note = f"[showing {LIST_CAP} of {len(found)} files, {left_out} left out; narrow the pattern]"
    return f"{listing}\n{note}"


def search(workspace: Workspace, pattern: str, path: str = ".", glob: str | None = None) -> str:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
    start = workspace.resolve(path)
    if not start.exists():
        raise ToolError(f"no such file or directory: {path}")
    files = _files_to_search(workspace, start, compile_glob(glob) if glob else None)
    results: list[str] = []
    for file in files:
        for line_no, text in _text_lines(file):
            if regex.search(text) is None:
                continue
            if len(results) == MATCH_CAP:
                results.append(
                    f"[stopped after {MATCH_CAP} matches; narrow the pattern, path or glob]"
                )
                return "\n".join(results)
            if len(text) > MATCH_LINE_CHARS:
                text = text[:MATCH_LINE_CHARS] + "…"
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


def _text_lines(file: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a text file without their line endings; nothing for binary files."""
    try:
        with file.open("rb") as f:
            if looks_binary(f.read(BINARY_SNIFF_BYTES)):
                return
            f.seek(0)
            for line_no, line in enumerate(f, start=1):
                yield line_no, line.decode("utf-8", errors="replace").rstrip("\r\n")
    except OSError:
        return  # an unreadable file should not abort the whole search
