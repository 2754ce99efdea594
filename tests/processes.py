"""Probes of OS processes for tests that check what a command left running."""

from __future__ import annotations

import os
from pathlib import Path


def gone(pid: int) -> bool:
    """True once the process no longer runs.

    A killed grandchild is reparented to init and stays a zombie until init reaps it; in a
    container whose init never reaps, that is forever. A zombie runs nothing, so it counts.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def live_in(root: Path) -> list[int]:
    """The processes (host PIDs) still running with `root` as their working directory.

    A sandboxed command's `$!` is a PID of its own namespace, meaningless out here, so
    tests find the command's processes by where they run instead.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            running_in = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, a zombie, or not ours to look at
            continue
        if running_in == root and not gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []
