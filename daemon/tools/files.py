"""The single-file tools: read_file, write_file and edit_file.

The functions are synchronous and do blocking I/O; the tool classes run them in a
worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from daemon.tools.base import ToolInput
from daemon.tools.errors import ToolError
from daemon.tools.tree import BINARY_SNIFF_BYTES, looks_binary, open_regular
from daemon.tools.workspace import Workspace

READ_CAP_BYTES = 256 * 1024
_READ_CAP_LABEL = "256 KiB"
EDIT_CAP_BYTES = 16 * 1024 * 1024
_EDIT_CAP_LABEL = "16 MiB"


class ReadFile(ToolInput):
    """Read a text file in the workspace, exactly as stored (no line numbers added).

    At most 256 KiB is returned. When more of the file follows, a final note in square
    brackets says which lines were shown and the offset to continue from. Use offset and
    limit to read part of a large file. Binary files are refused.
    """

    tool_name = "read_file"

    path: str = Field(min_length=1, description="File path, relative to the workspace root.")
    offset: int = Field(default=1, ge=1, description="First line to return, counting from 1.")
    limit: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        default=None, description="Maximum number of lines to return. Default: to the end."
    )

    async def run(self, workspace: Workspace) -> str:
        return await asyncio.to_thread(read_file, workspace, self.path, self.offset, self.limit)


class WriteFile(ToolInput):
    """Create or overwrite a file in the workspace with the given UTF-8 content.

    Missing parent directories are created. To change part of an existing file, prefer
    edit_file.
    """

    tool_name = "write_file"

    path: str = Field(min_length=1, description="File path, relative to the workspace root.")
    content: str = Field(description="The complete new content of the file.")

    async def run(self, workspace: Workspace) -> str:
        await workspace.check_write(workspace.resolve(self.path), self.content.encode())
        return await asyncio.to_thread(write_file, workspace, self.path, self.content)


class EditFile(ToolInput):
    """Replace exact text in an existing file in the workspace.

    `old` must match the file exactly, including whitespace and indentation, and must occur
    exactly once unless replace_all is true: include enough surrounding lines to make it
    unique. Read the file first so the text matches.
    """

    tool_name = "edit_file"

    path: str = Field(min_length=1, description="File path, relative to the workspace root.")
    old: str = Field(min_length=1, description="The exact text to replace.")
    new: str = Field(description="The replacement text.")
    replace_all: bool = Field(
        default=False, description="Replace every occurrence of old instead of exactly one."
    )

    async def run(self, workspace: Workspace) -> str:
        target = workspace.resolve(self.path)
        await workspace.check_write(target)  # a protected file: refused before anything else
        edit = await asyncio.to_thread(
            plan_edit, workspace, self.path, self.old, self.new, self.replace_all
        )
        await workspace.check_write(target, edit.data)
        return await asyncio.to_thread(apply_edit, edit)


def read_file(workspace: Workspace, path: str, offset: int = 1, limit: int | None = None) -> str:
    target = _existing_file(workspace, path)
    shown: list[bytes] = []
    size = 0
    lines_seen = 0
    cut: str | None = None  # why output stopped before the end of the file, if it did
    with open_regular(target) as f:
        if looks_binary(f.read(BINARY_SNIFF_BYTES)):
            raise ToolError(f"{path} looks like a binary file; read_file only shows text")
        f.seek(0)
        for lines_seen, line in enumerate(f, start=1):
            if lines_seen < offset:
                continue
            if limit is not None and len(shown) == limit:
                cut = "limit"
                break
            if size + len(line) > READ_CAP_BYTES:
                if not shown:  # one line over the cap: show its start rather than nothing
                    shown.append(line[:READ_CAP_BYTES])
                    cut = "long line"
                else:
                    cut = "size"
                break
            shown.append(line)
            size += len(line)
    if not shown:
        if lines_seen == 0:
            return "[empty file]"
        raise ToolError(f"offset {offset} is past the end of {path} ({lines_seen} lines)")
    text = b"".join(shown).decode("utf-8", errors="replace")
    if cut is None:
        return text
    last = offset + len(shown) - 1
    if cut == "long line":
        note = f"line {last} is longer than {_READ_CAP_LABEL}; only its start is shown"
    elif cut == "size":
        note = f"output capped at {_READ_CAP_LABEL}: showing lines {offset}-{last}"
    else:
        note = f"showing lines {offset}-{last}"
    separator = "" if text.endswith("\n") else "\n"
    return f"{text}{separator}[{note}; the file continues, read on with offset={last + 1}]"


def write_file(workspace: Workspace, path: str, content: str) -> str:
    target = workspace.resolve(path)
    if target.is_dir():
        raise ToolError(f"{path} is a directory")
    existed = target.exists()
    if existed and not target.is_file():
        raise ToolError(f"{path} is not a regular file")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode()
    with open_regular(target, "wb") as f:
        f.write(data)  # bytes, so newlines are written exactly as given
    return f"{'overwrote' if existed else 'created'} {path} ({len(data)} bytes written)"


@dataclass(frozen=True, slots=True)
class Edit:
    """An edit worked out and not yet written: the file's new bytes."""

    path: str
    target: Path
    data: bytes
    replaced: int


def edit_file(workspace: Workspace, path: str, old: str, new: str, replace_all: bool) -> str:
    return apply_edit(plan_edit(workspace, path, old, new, replace_all))


def apply_edit(edit: Edit) -> str:
    with open_regular(edit.target, "wb") as f:
        f.write(edit.data)
    return f"replaced {edit.replaced} occurrence{'' if edit.replaced == 1 else 's'} in {edit.path}"


def plan_edit(workspace: Workspace, path: str, old: str, new: str, replace_all: bool) -> Edit:
    if old == new:
        raise ToolError("old and new are identical; there is nothing to change")
    target = _existing_file(workspace, path)
    with open_regular(target) as f:
        data = f.read(EDIT_CAP_BYTES + 1)
    if len(data) > EDIT_CAP_BYTES:
        # Counting and replacing in a string hold the GIL, which the daemon's event loop
        # needs too: on hundreds of megabytes that is a stall of seconds.
        raise ToolError(
            f"{path} is larger than {_EDIT_CAP_LABEL}; edit_file does not edit files this"
            " large (run_command can, with sed for instance)"
        )
    if looks_binary(data[:BINARY_SNIFF_BYTES]):
        raise ToolError(f"{path} looks like a binary file; edit_file only edits text")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ToolError(f"{path} is not valid UTF-8; edit_file only edits UTF-8 text") from None
    count = text.count(old)
    if count == 0:
        raise ToolError(
            f"old text not found in {path}; it must match exactly, including whitespace"
        )
    if count > 1 and not replace_all:
        raise ToolError(
            f"old text occurs {count} times in {path}; include more surrounding text to make"
            " it unique, or set replace_all to replace every occurrence"
        )
    replaced = count if replace_all else 1
    return Edit(path, target, text.replace(old, new, replaced).encode(), replaced)


def _existing_file(workspace: Workspace, path: str) -> Path:
    target = workspace.resolve(path)
    if target.is_dir():
        raise ToolError(f"{path} is a directory; use list_files to see what it contains")
    if not target.exists():
        raise ToolError(f"file not found: {path}")
    if not target.is_file():
        raise ToolError(f"{path} is not a regular file")
    return target
