"""Guarded writes: protected files no agent may change, and rules every written file
is checked against.

Protected files (`SessionSpec.protect`, by default the files the checks name) are the
session's ground truth. Their bytes are copied when the session is created and kept in
Redis (`ProtectedFile`), so any daemon that drives the session restores the same
truth. write_file and edit_file are refused on them before anything is written (the
workspace's write veto, `Guard.veto_write`); around every other writing call
(run_command) they are fingerprinted before and compared after, and a change is undone
from the copy and reported.

Rules are standing nudges with a regex (`rule_regex`: a line that matches breaks it)
or a command (`rule_cmd`, given the file's path: a non-zero exit breaks it). After a
call, every file it wrote (the write_file/edit_file path, or what a run_command
changed, from an mtime and size snapshot of the workdir) is checked against them; a
rule with `rule_veto` refuses a write_file/edit_file that would break it instead.

Everything here is per tool call; what follows from it (events, counters, the rule
going back to the agent) is the core's (`AgentCore._finish_tools`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import shlex
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from daemon.agent_state import Finding, ProtectedTouched, RuleBroken, ToolCall
from daemon.tools.errors import ToolError
from daemon.tools.regex import LinePattern
from daemon.tools.shell import CappedOutput, execute
from daemon.tools.tree import SKIPPED_DIRS, compile_glob
from daemon.tools.workspace import Workspace
from protocol.events import ProtectedChange
from protocol.nudges import Nudge
from protocol.sessions import AgentSummary, RuleSummary

#: The daemon keeps a copy of protected files up to these sizes; a larger file is only
#: fingerprinted: a change to it is reported (and counts as tampering) but not undone.
MAX_COPY_FILE_BYTES = 1024 * 1024
MAX_COPY_TOTAL_BYTES = 16 * 1024 * 1024
#: Files a walk looks at (protected globs, the workdir snapshot) before it stops.
MAX_WALK_FILES = 20_000
#: Files of one call checked against the rules, their size, and what a violation shows.
MAX_RULE_FILES = 20
MAX_RULE_FILE_BYTES = 1024 * 1024
MAX_RULE_LINES = 10
MAX_LINE_CHARS = 200
RULE_CMD_TIMEOUT_S = 60.0
#: Tools that only read: no guard work around them.
READ_ONLY_TOOLS = frozenset({"read_file", "list_files", "search"})
FILE_WRITERS = frozenset({"write_file", "edit_file"})


class ProtectedFile(BaseModel):
    """A protected file as the session was created with it: its fingerprint, and its
    bytes (base64) unless it was over the copy limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    size: int
    mode: int = 0o644
    data: str | None = None

    def content(self) -> bytes | None:
        return None if self.data is None else base64.b64decode(self.data)


# -- pure parts -------------------------------------------------------------------


def default_protect(checks: Iterable[str], workdir: str | os.PathLike[str]) -> list[str]:
    """The files the check commands name: each word of each command (shell-split) that
    is an existing file inside the workdir, or `DIR/**` for a directory (not the
    workdir itself, which would protect everything)."""
    root = Path(workdir).resolve()
    found: list[str] = []
    for command in checks:
        try:
            words = shlex.split(command)
        except ValueError:  # unbalanced quotes: the shell will say so; protect nothing
            continue
        for word in words:
            if not word or word.startswith("-"):
                continue
            try:
                path = (root / word).resolve()
            except (OSError, RuntimeError, ValueError):
                continue
            if path == root or not path.is_relative_to(root) or not path.exists():
                continue
            relative = path.relative_to(root).as_posix()
            glob = f"{relative}/**" if path.is_dir() else relative
            if glob not in found:
                found.append(glob)
    return found


@dataclass(frozen=True, slots=True)
class Globs:
    """Protect globs, matched as list_files matches them: `**` spans directories, a
    glob without `/` matches a name at any depth."""

    patterns: tuple[str, ...]
    _matchers: tuple[Callable[[str], bool], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Globs:
        patterns = tuple(patterns)
        return cls(patterns, tuple(compile_glob(p) for p in patterns))

    def match(self, path: str) -> bool:
        return any(m(path) for m in self._matchers)

    def bases(self) -> list[str]:
        """Where to look for matches: each glob's directories before its first wildcard
        ("" for the whole workdir)."""
        found: list[str] = []
        for pattern in self.patterns:
            pattern = pattern.removeprefix("./")
            parts = pattern.split("/") if "/" in pattern else []
            literal = []
            for part in parts[:-1]:
                if any(c in part for c in "*?["):
                    break
                literal.append(part)
            base = "/".join(literal)
            if base not in found:
                found.append(base)
        return found


def compare(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Paths whose fingerprint differs (created, changed or deleted), sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def changed_files(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]
) -> list[str]:
    """Files created or modified between two workdir snapshots (mtime, size), sorted."""
    return sorted(p for p, sig in after.items() if before.get(p) != sig)


def regex_lines(pattern: LinePattern, data: bytes) -> tuple[str, ...]:
    """The lines of `data` the rule's pattern matches, as `N: text`, the first few."""
    if b"\0" in data[:8192]:
        return ()  # binary: rules are about text
    shown: list[str] = []
    for start, end in pattern.lines(data):
        number = data.count(b"\n", 0, start) + 1
        text = data[start:end].decode(errors="replace")[:MAX_LINE_CHARS]
        shown.append(f"{number}: {text}")
        if len(shown) == MAX_RULE_LINES:
            break
    return tuple(shown)


def refusal(path: str) -> str:
    return (
        f"refused: {path} is protected by the session (its checks rely on it); "
        "change the code, not the checks"
    )


def rule_refusal(rule: Nudge, path: str, lines: Sequence[str]) -> str:
    shown = "\n".join(f"  {line}" for line in lines)
    return f"refused by rule {rule.nudge_id} ({rule.text}): {path} would break it\n{shown}"


def rule_summaries(standing: Iterable[Nudge], agents: Iterable[AgentSummary]) -> list[RuleSummary]:
    """The session's rules, oldest first, with how often its agents broke each."""
    agents = list(agents)
    return [
        RuleSummary(
            nudge_id=n.nudge_id,
            text=n.text,
            regex=n.rule_regex,
            cmd=n.rule_cmd,
            veto=n.rule_veto,
            violations=sum(a.rule_violations.get(n.nudge_id, 0) for a in agents),
        )
        for n in standing
        if n.is_rule
    ]


# -- I/O --------------------------------------------------------------------------


def capture(root: Path, globs: Globs) -> dict[str, ProtectedFile]:
    """The protected files as they are now, with their bytes within the copy limits."""
    copy: dict[str, ProtectedFile] = {}
    total = 0
    for relative, path in _matching(root, globs):
        try:
            info = path.stat()
            data = path.read_bytes()
        except OSError:
            continue
        keep = len(data) <= MAX_COPY_FILE_BYTES and total + len(data) <= MAX_COPY_TOTAL_BYTES
        total += len(data) if keep else 0
        copy[relative] = ProtectedFile(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            mode=stat.S_IMODE(info.st_mode),
            data=base64.b64encode(data).decode() if keep else None,
        )
    return copy


def _matching(root: Path, globs: Globs) -> Iterable[tuple[str, Path]]:
    """(relative path, path) of every regular file the globs match, each once, bounded."""
    seen: set[str] = set()
    looked = 0
    for base in globs.bases():
        start = root / base if base else root
        if start.is_file() or start.is_symlink():
            continue
        for directory, dirs, names in os.walk(start):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(names):
                looked += 1
                if looked > MAX_WALK_FILES:
                    return
                path = Path(directory, name)
                relative = path.relative_to(root).as_posix()
                if relative in seen or not globs.match(relative):
                    continue
                if path.is_symlink() or not path.is_file():
                    continue
                seen.add(relative)
                yield relative, path


def fingerprints(root: Path, globs: Globs) -> dict[str, str]:
    """sha256 of each protected file (size and mtime for one over the copy limit)."""
    found: dict[str, str] = {}
    for relative, path in _matching(root, globs):
        try:
            info = path.stat()
            if info.st_size > MAX_COPY_TOTAL_BYTES:
                found[relative] = f"{info.st_size}:{info.st_mtime_ns}"
            else:
                found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return found


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime ns, size) of the workdir's files, skipping .git and the like, bounded."""
    found: dict[str, tuple[int, int]] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in names:
            if len(found) >= MAX_WALK_FILES:
                return found
            path = Path(directory, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[path.relative_to(root).as_posix()] = (info.st_mtime_ns, info.st_size)
    return found


def restore(root: Path, relative: str, kept: ProtectedFile | None) -> str | None:
    """Put a protected path back as the copy has it (absent: remove it); returns why
    it could not, or None."""
    path = root / relative
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        if kept is None:
            return None
        data = kept.content()
        if data is None:
            return f"it is over the {MAX_COPY_FILE_BYTES // 1024} KiB the daemon keeps a copy of"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(kept.mode)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@dataclass(slots=True)
class Before:
    """What a call's guard saw before it ran."""

    protected: dict[str, str] | None = None
    files: dict[str, tuple[int, int]] | None = None


class Guard:
    """One agent's guard: the workspace's write veto, and the checks around each call.

    `rules` returns the session's rules as they stand (standing nudges with a rule).
    """

    def __init__(
        self,
        protect: Sequence[str],
        copy: Mapping[str, ProtectedFile],
        rules: Callable[[], Sequence[Nudge]],
    ) -> None:
        self.globs = Globs.of(protect)
        self.copy = dict(copy)
        self._rules = rules
        self._patterns: dict[str, LinePattern] = {}
        #: Findings of the call under way, recorded by `veto_write`.
        self._findings: list[Finding] = []

    def rules(self) -> list[Nudge]:
        return [n for n in self._rules() if n.is_rule]

    # -- the workspace's write veto ------------------------------------------------

    async def veto_write(self, workspace: Workspace, path: str, data: bytes | None) -> str | None:
        """Why write_file/edit_file may not write `data` to `path` (resolved, relative
        to the root), or None. `data` None: only the path is known yet."""
        if self.globs.patterns and self.globs.match(path):
            self._findings.append(ProtectedTouched(path, "refused"))
            return refusal(path)
        if data is None:
            return None
        for rule in self.rules():
            if not rule.rule_veto:
                continue
            lines = await self._broken(workspace, rule, path, data)
            if lines is not None:
                found = RuleBroken(rule.nudge_id, rule.text, path, lines, True, time.time())
                self._findings.append(found)
                return rule_refusal(rule, path, lines)
        return None

    # -- around a call ----------------------------------------------------------------

    async def before(self, workspace: Workspace, call: ToolCall) -> Before | None:
        self._findings = []
        if call.name in READ_ONLY_TOOLS:
            return None
        root = workspace.root
        protected = (
            await asyncio.to_thread(fingerprints, root, self.globs) if self.globs.patterns else None
        )
        files = None
        if call.name not in FILE_WRITERS and self.rules():
            files = await asyncio.to_thread(snapshot, root)
        return Before(protected, files)

    async def after(
        self, workspace: Workspace, call: ToolCall, before: Before | None, *, ok: bool
    ) -> tuple[Finding, ...]:
        """What the call did to protected files (undone) and which rules its writes
        break; with the refusals `veto_write` recorded during the call."""
        findings, self._findings = self._findings, []
        if before is None:
            return tuple(findings)
        root = workspace.root
        restored: set[str] = set()
        if before.protected is not None:
            now = await asyncio.to_thread(fingerprints, root, self.globs)
            for relative in compare(before.protected, now):
                kept = self.copy.get(relative)
                change: ProtectedChange = (
                    "created" if kept is None else "changed" if relative in now else "deleted"
                )
                why = await asyncio.to_thread(restore, root, relative, kept)
                findings.append(ProtectedTouched(relative, change, why is None, why))
                restored.add(relative)
        rules = self.rules()
        if not rules:
            return tuple(findings)
        written: list[str] = []
        if call.name in FILE_WRITERS:
            path = _written_path(workspace, call) if ok else None
            written = [path] if path else []
            rules = [r for r in rules if not r.rule_veto]  # those refused it before
        elif before.files is not None:
            written = changed_files(before.files, await asyncio.to_thread(snapshot, root))
        for relative in [w for w in written if w not in restored][:MAX_RULE_FILES]:
            data = await asyncio.to_thread(_read_capped, root / relative)
            if data is None:
                continue
            for rule in rules:
                lines = await self._broken(workspace, rule, relative, data, on_disk=True)
                if lines is not None:
                    findings.append(
                        RuleBroken(rule.nudge_id, rule.text, relative, lines, at=time.time())
                    )
        return tuple(findings)

    async def undo(self, workspace: Workspace, before: Before | None) -> None:
        """A call cut short: still put protected files back (nothing is reported)."""
        self._findings = []
        if before is None or before.protected is None:
            return
        root = workspace.root
        now = await asyncio.to_thread(fingerprints, root, self.globs)
        for relative in compare(before.protected, now):
            await asyncio.to_thread(restore, root, relative, self.copy.get(relative))

    # -- rules -------------------------------------------------------------------------

    async def _broken(
        self, workspace: Workspace, rule: Nudge, path: str, data: bytes, *, on_disk: bool = False
    ) -> tuple[str, ...] | None:
        """The lines of `data` (the file `path`) that break `rule`, or None if none do."""
        if rule.rule_regex is not None:
            pattern = self._patterns.get(rule.rule_regex)
            if pattern is None:
                try:
                    pattern = self._patterns[rule.rule_regex] = LinePattern(rule.rule_regex)
                except ToolError:
                    return None  # checked when the nudge was sent; RE2 moved on, say
            lines = await asyncio.to_thread(regex_lines, pattern, data)
            return lines or None
        assert rule.rule_cmd is not None
        if on_disk:
            return await _run_rule_cmd(workspace, rule.rule_cmd, path)
        # Not written yet (a veto): the command judges a copy next to where it would go.
        target = workspace.root / path
        folder = target.parent if target.parent.is_dir() else workspace.root
        trial = folder / f".steer-rule-{secrets.token_hex(4)}-{target.name}"
        try:
            await asyncio.to_thread(trial.write_bytes, data)
            return await _run_rule_cmd(
                workspace, rule.rule_cmd, trial.relative_to(workspace.root).as_posix()
            )
        finally:
            with contextlib.suppress(OSError):
                trial.unlink()


async def _run_rule_cmd(workspace: Workspace, command: str, path: str) -> tuple[str, ...] | None:
    try:
        ended = await execute(
            workspace,
            f"{command} {shlex.quote(path)}",
            RULE_CMD_TIMEOUT_S,
            CappedOutput(2_000, 4_000),
        )
    except OSError as exc:
        return (f"steer could not run the rule command: {exc}",)
    if ended.exit_code == 0:
        return None
    how = "timed out" if ended.exit_code is None else f"exited {ended.exit_code}"
    tail = [line[:MAX_LINE_CHARS] for line in ended.output.splitlines()[-MAX_RULE_LINES:]]
    return (f"$ {command} {path}: {how}", *tail)


def _written_path(workspace: Workspace, call: ToolCall) -> str | None:
    path = call.input.get("path")
    if not isinstance(path, str):
        return None
    try:
        return workspace.relative(workspace.resolve(path))
    except ToolError:
        return None


def _read_capped(path: Path) -> bytes | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_RULE_FILE_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None
