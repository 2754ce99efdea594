"""Which files the listing and search tools see, and how globs select them.

Walks skip version-control, virtualenv, dependency and cache directories, do not follow
directory symlinks, and drop file symlinks that resolve outside the workspace. Globs
become RE2 expressions, linear in the path however many `*` the model writes. The tools
open files with `open_regular`, which never waits on a FIFO or a device: a worker thread
stuck in open() could never be got back.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import re2

from daemon.tools.errors import ToolError
from daemon.tools.regex import options, reason
from daemon.tools.workspace import Workspace

SKIPPED_DIRS = frozenset(
    {".git", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)

# Like git: a NUL byte in the first few KiB means binary.
BINARY_SNIFF_BYTES = 8192

# Characters that must be escaped inside a regex character class (an unescaped `[:`
# would start a POSIX class).
_CLASS_SPECIALS = frozenset("\\[]^")


def looks_binary(head: bytes) -> bool:
    return b"\0" in head


def open_regular(path: Path, mode: Literal["rb", "wb"] = "rb") -> BinaryIO:
    """`path` opened as `open(path, mode)` would, if it is a regular file.

    Raises OSError otherwise, and never blocks to find out: O_NONBLOCK makes opening a
    FIFO return (or fail) at once, and fstat then tells what was opened.
    """
    flags = os.O_RDONLY if mode == "rb" else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def iter_files(workspace: Workspace, start: Path) -> Iterator[Path]:
    """Regular files under the directory `start`: a directory's files, then its subdirectories'.

    Both are sorted, so the order is stable from run to run.
    """
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            # is_file() also drops FIFOs and sockets, which would block a reader.
            if path.is_file() and workspace.contains(path):
                yield path


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A predicate over workspace-relative paths (forward slashes) for a glob pattern.

    `**` spans directories, `*` and `?` stay within one path segment, `[...]` and `[!...]`
    are character classes. A pattern without `/` matches file names at any depth, as in
    .gitignore, so `*.py` finds every Python file.
    """
    pattern = pattern.removeprefix("./")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise ToolError(f"glob must be relative to the workspace, without '..': {pattern}")
    if "/" not in pattern:
        pattern = "**/" + pattern
    try:
        regex = re2.compile(_translate(pattern), options(dot_nl=True))
    except re2.error as exc:
        raise ToolError(f"invalid glob {pattern!r}: {reason(exc)}") from None
    return lambda path: regex.fullmatch(path) is not None


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := _class_end(pattern, i)) != -1:
            body = pattern[i + 1 : end]
            negated = body.startswith("!")
            members = body[1:] if negated else body
            chars = "".join("\\" + c if c in _CLASS_SPECIALS else c for c in members)
            out.append(("[^/" if negated else "[") + chars + "]")
            i = end + 1
        else:
            out.append(re2.escape(pattern[i]))
            i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start`, or -1 (then `[` is literal)."""
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":  # a leading `]` is a member, as in fnmatch
        j += 1
    return pattern.find("]", j)
