"""The workspace: the directory a session's file tools may touch.

Every path the model supplies goes through `Workspace.resolve`, which refuses anything
that lands outside the root once `..` and symlinks are resolved. This keeps the file tools
from wandering by mistake; it is not a sandbox. `run_command` runs any shell command, in
the workspace's `sandbox` when it has one (see `daemon.tools.sandbox`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from daemon.tools.errors import ToolError
from daemon.tools.sandbox import Sandbox


class WriteVeto(Protocol):
    """Decides whether write_file/edit_file may write (`daemon.guards.Guard`)."""

    async def veto_write(self, workspace: Workspace, path: str, data: bytes | None) -> str | None:
        """Why `data` may not be written to `path` (relative), or None; `data` None:
        the content is not known yet, only the path is asked about."""
        ...


class Workspace:
    """A session's working directory, resolved once at construction.

    `sandbox` confines `run_command` there; with None, commands run unconfined.
    `guard` may refuse the file tools' writes (protected files, rules with a veto).
    """

    __slots__ = ("guard", "root", "sandbox")

    def __init__(
        self,
        root: str | os.PathLike[str],
        sandbox: Sandbox | None = None,
        *,
        guard: WriteVeto | None = None,
    ) -> None:
        resolved = Path(root).resolve()
        if not resolved.is_dir():
            # The caller's mistake, not the model's: a session needs an existing directory.
            raise NotADirectoryError(f"workspace root is not a directory: {root}")
        self.root = resolved
        self.sandbox = sandbox
        self.guard = guard

    async def check_write(self, target: Path, data: bytes | None = None) -> None:
        """Raise ToolError if the guard refuses writing `data` to `target` (resolved)."""
        if self.guard is not None:
            reason = await self.guard.veto_write(self, self.relative(target), data)
            if reason is not None:
                raise ToolError(reason)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def resolve(self, path: str) -> Path:
        """The absolute, symlink-free path for `path` (relative to the root, or absolute).

        Raises ToolError when the result is outside the workspace.
        """
        try:
            resolved = (self.root / path).resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            # ValueError: embedded NUL byte; RuntimeError (3.11) or OSError: symlink loop.
            raise ToolError(f"invalid path {path!r}: {exc}") from None
        if not resolved.is_relative_to(self.root):
            raise ToolError(f"path is outside the workspace: {path}")
        return resolved

    def contains(self, path: Path) -> bool:
        """Whether `path`, with symlinks resolved, lies inside the workspace."""
        try:
            return path.resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):
            return False

    def relative(self, path: Path) -> str:
        """How the model sees `path`: relative to the root, with forward slashes."""
        return path.relative_to(self.root).as_posix()

    def describe_os_error(self, exc: OSError) -> str:
        """A message for the model about a filesystem error, naming paths relative to the root."""
        reason = exc.strerror or str(exc)
        if exc.filename is None:
            return reason
        name = Path(os.fsdecode(exc.filename))
        shown = self.relative(name) if name.is_relative_to(self.root) else str(name)
        return f"{reason}: {shown}"
