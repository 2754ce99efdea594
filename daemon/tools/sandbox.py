"""The sandbox `run_command` runs the agent's commands in: bubblewrap (`bwrap`).

Inside it a command
- sees the filesystem read-only, except the workspace (read-write, at its real path);
- finds the *hidden* directories empty (a throwaway tmpfs): /tmp (so it is private), the
  user's home and STEER_HOME (the API token, the Redis password). Toolchains that PATH or
  the daemon's Python point into under a hidden directory stay visible, read-only:
  `~/.pyenv` for `~/.pyenv/shims` (the top-level dot-directory: version managers keep
  more than their bin there), or exactly the directory otherwise (`~/src/x/.venv/bin`);
- sees only its own processes: a new PID namespace with its own /proc, so not the daemon's
  environment or command line;
- holds no capabilities (bwrap run as root would otherwise keep them all, and the command
  could simply unmount what hides the home);
- shares the daemon's network, unless the sandbox has `network=False`;
- dies with its bwrap (`--die-with-parent`), and with it everything in the namespace, even
  processes that left the command's session: killing the group led by bwrap is enough.

`Sandbox.wrap` builds the argv and does no I/O. `open_sandbox` decides the paths and proves
that bwrap works here by running `true` in the very sandbox the commands will get: bwrap
may be missing, or unprivileged user namespaces refused (some distributions, most
containers). Then the daemon says so once and runs commands unconfined.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROBE_TIMEOUT_S = 10.0


class SandboxUnavailable(Exception):
    """bwrap is missing or cannot sandbox here; the message says which, for the operator."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    #: The bwrap executable.
    bwrap: str
    #: Absolute, symlink-free directories shown empty.
    hidden: tuple[Path, ...] = ()
    #: Absolute, symlink-free directories under hidden ones shown read-only after all.
    readable: tuple[Path, ...] = ()
    network: bool = True

    def wrap(self, workdir: Path, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` in the sandbox, in `workdir` (absolute, symlink-free)."""
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        args += ["--unshare-pid", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if not self.network:
            args.append("--unshare-net")
        for path in _outermost(self.hidden):
            args += ["--tmpfs", str(path)]
        for path in self.readable:
            args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(workdir), str(workdir)]
        # A bind brings back what lies under it: STEER_HOME inside the workspace, say.
        shown = (*self.readable, workdir)
        for path in self.hidden:
            if any(path != bound and path.is_relative_to(bound) for bound in shown):
                args += ["--tmpfs", str(path)]
        return [*args, "--chdir", str(workdir), "--", *argv]


def open_sandbox(state_dir: Path, *, network: bool = True, bwrap: str = "bwrap") -> Sandbox:
    """The sandbox hiding /tmp, the home and `state_dir`, tried once.

    Raises SandboxUnavailable when `bwrap` is not found or cannot run a command here.
    """
    found = shutil.which(bwrap)
    if found is None:
        raise SandboxUnavailable(f"{bwrap} not found (Debian: apt-get install bubblewrap)")
    state = _existing(state_dir)
    hidden = _existing(Path("/tmp"), Path.home(), *state)
    # PATH is the one the commands get (the daemon's, minus its secrets).
    wanted = _existing(*os.environ.get("PATH", "").split(os.pathsep), sys.prefix, sys.base_prefix)
    sandbox = Sandbox(found, hidden, toolchains(wanted, hidden, keep_hidden=state), network)
    with tempfile.TemporaryDirectory() as probe_dir:
        try:
            probe = subprocess.run(
                sandbox.wrap(Path(probe_dir).resolve(), ["true"]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"{found} cannot run: {exc}") from None
    if probe.returncode != 0:
        reason = probe.stderr.strip() or f"exit code {probe.returncode}"
        raise SandboxUnavailable(f"{found} cannot sandbox here: {reason}")
    return sandbox


def toolchains(
    wanted: Iterable[Path], hidden: Sequence[Path], *, keep_hidden: Sequence[Path] = ()
) -> tuple[Path, ...]:
    """What to show of the `wanted` directories that lie under a hidden one.

    The top-level dot-directory holding one (`~/.pyenv` for `~/.pyenv/shims`), or else
    the directory itself: a whole `~/src` is not a toolchain. Nothing is shown that is a
    hidden directory itself or lies under one of `keep_hidden` (the steer state).
    """
    shown: list[Path] = []
    for path in wanted:
        under = [h for h in hidden if path != h and path.is_relative_to(h)]
        if not under or any(path.is_relative_to(k) for k in keep_hidden):
            continue
        top = min(under, key=lambda h: len(h.parts))
        first = top / path.relative_to(top).parts[0]
        chosen = first if first.name.startswith(".") else path
        if chosen not in hidden and chosen not in shown:
            shown.append(chosen)
    return tuple(p for p in shown if not any(p != q and p.is_relative_to(q) for q in shown))


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """`paths` without those under another: a tmpfs over the outer one hides them too."""
    paths = list(paths)
    return [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]


def _existing(*paths: str | Path) -> tuple[Path, ...]:
    """The directories among `paths`, absolute and symlink-free, each once, in order."""
    found: list[Path] = []
    for path in paths:
        if not path or not os.path.isabs(path):
            continue  # an empty or relative PATH entry names no fixed directory
        resolved = Path(path).resolve()
        if resolved.is_dir() and resolved not in found:
            found.append(resolved)
    return tuple(found)
