"""Running acceptance checks: each command in the agent's workdir, as the shell tool runs
commands (same sandbox, same scrubbed environment, killed at its timeout), and the
evidence of the round: exit codes, durations, output tails and digests, and the state
of the workspace they ran on.

"The same failure" is the same digest: sha256 of the captured output with what varies
between two identical runs masked (durations like `0.12s`, memory addresses), so a test
runner's timing line does not make every failure look new.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from daemon.tools.shell import CappedOutput, Ended, command_env, execute
from daemon.tools.workspace import Workspace
from protocol.checks import CheckReport, CheckRun

#: Output kept per check: its start (what ran) and, mostly, its end (how it failed).
OUTPUT_HEAD_BYTES = 2_000
OUTPUT_TAIL_BYTES = 12_000
#: The tail shown as evidence and sent to the agent.
TAIL_CHARS = 4_000
GIT_TIMEOUT_S = 10.0
#: The exit code of a check that could not be started, as a shell reports it.
NOT_STARTED = 127
#: A workdir without git is digested file by file, up to these bounds.
MAX_DIGEST_FILES = 20_000
MAX_DIGEST_BYTES = 256 * 1024 * 1024
SKIPPED_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", ".mypy_cache"})

_VARYING = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:ms|s|sec|secs|seconds|µs|us|ns|m|min)\b"  # durations
    r"|\b0x[0-9a-fA-F]{6,}\b"  # addresses
)


def output_digest(output: str) -> str:
    return hashlib.sha256(_VARYING.sub("#", output).encode()).hexdigest()


def round_digest(runs: Sequence[CheckRun]) -> str:
    """What identifies a round's failure: its failing commands and their digests."""
    failing = [f"{r.command}\0{r.digest}" for r in runs if not r.passed]
    return hashlib.sha256("\n".join(failing).encode()).hexdigest() if failing else ""


async def run_checks(
    workspace: Workspace, commands: Sequence[str], *, attempt: int, timeout_s: float
) -> CheckReport:
    """Run every check (all of them, so the evidence is whole), then describe the
    workspace they ran on."""
    runs = [await run_check(workspace, command, timeout_s) for command in commands]
    state = await describe_workspace(workspace.root)
    return CheckReport(
        attempt=attempt,
        runs=runs,
        workspace=state,
        finished_at=time.time(),
        passed=all(r.passed for r in runs),
        digest=round_digest(runs),
    )


async def run_check(workspace: Workspace, command: str, timeout_s: float) -> CheckRun:
    started = time.monotonic()
    try:
        ended = await execute(
            workspace, command, timeout_s, CappedOutput(OUTPUT_HEAD_BYTES, OUTPUT_TAIL_BYTES)
        )
    except (OSError, ValueError) as exc:  # no workdir, a NUL byte: it fails, saying why
        ended = Ended(NOT_STARTED, f"steer could not run the check: {exc}")
    return CheckRun(
        command=command,
        exit_code=ended.exit_code,
        duration_s=round(time.monotonic() - started, 3),
        output_tail=ended.output[-TAIL_CHARS:],
        digest=output_digest(ended.output),
        passed=ended.exit_code == 0,
    )


async def describe_workspace(root: Path) -> str:
    """For a git work tree: the commit and `git diff --stat` against it (uncommitted
    changes included); otherwise a digest of every file under the root."""
    head = await _git(root, "rev-parse", "HEAD")
    if head is not None:
        diff = await _git(root, "diff", "--stat", "HEAD") or ""
        untracked = await _git(root, "ls-files", "--others", "--exclude-standard") or ""
        lines = [f"git {head.strip()}" + ("" if diff.strip() else " (clean)")]
        if diff.strip():
            lines.append(diff.rstrip())
        if untracked.strip():
            lines.append(f"{len(untracked.splitlines())} untracked file(s)")
        return "\n".join(lines)
    return await asyncio.to_thread(_digest_files, root)


async def _git(root: Path, *args: str) -> str | None:
    """git's output, or None when it fails (not a work tree, no commit yet, no git)."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            str(root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=command_env() | {"GIT_OPTIONAL_LOCKS": "0"},
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(GIT_TIMEOUT_S):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return out.decode(errors="replace") if process.returncode == 0 else None


def _digest_files(root: Path) -> str:
    digest = hashlib.sha256()
    files = size = 0
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            path = Path(directory, name)
            if not path.is_file() or path.is_symlink():
                continue
            files += 1
            size += path.stat().st_size
            if files > MAX_DIGEST_FILES or size > MAX_DIGEST_BYTES:
                return f"files: more than {MAX_DIGEST_FILES} files or {MAX_DIGEST_BYTES} bytes"
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"files: {files}, sha256 {digest.hexdigest()}"
