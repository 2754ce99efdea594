"""The sandbox's argv (no I/O) and finding out whether bwrap works here (real bwrap)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from daemon.tools.sandbox import Sandbox, SandboxUnavailable, open_sandbox, toolchains

HOME = Path("/home/ann")
STATE = HOME / ".steer"
HIDDEN = (Path("/tmp"), HOME, STATE)
BASE = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
BASE += ["--unshare-pid", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]


def mounts(argv: list[str]) -> list[tuple[str, ...]]:
    """The mount options after the fixed ones, each with its paths, in order."""
    assert argv[: len(BASE)] == BASE
    rest = argv[len(BASE) : argv.index("--")]
    out: list[tuple[str, ...]] = []
    while rest:
        option = rest.pop(0)
        width = {"--tmpfs": 1, "--ro-bind": 2, "--bind": 2, "--chdir": 1, "--unshare-net": 0}
        out.append((option, *rest[: width[option]]))
        del rest[: width[option]]
    return out


def test_hides_tmp_home_and_state_shows_toolchains_then_binds_the_workspace() -> None:
    sandbox = Sandbox("bwrap", HIDDEN, readable=(HOME / ".pyenv",))
    argv = sandbox.wrap(Path("/srv/ws"), ["sh", "-c", "make"])
    assert mounts(argv) == [
        ("--tmpfs", "/tmp"),
        ("--tmpfs", "/home/ann"),  # STEER_HOME inside it needs no tmpfs of its own
        ("--ro-bind", "/home/ann/.pyenv", "/home/ann/.pyenv"),
        ("--bind", "/srv/ws", "/srv/ws"),
        ("--chdir", "/srv/ws"),
    ]
    assert argv[argv.index("--") :] == ["--", "sh", "-c", "make"]


def test_a_workspace_in_home_is_bound_on_top_and_state_inside_it_hidden_again() -> None:
    # The e2e tests' layout: STEER_HOME lies inside the session's workspace.
    argv = Sandbox("bwrap", HIDDEN).wrap(HOME, ["true"])
    assert mounts(argv) == [
        ("--tmpfs", "/tmp"),
        ("--tmpfs", "/home/ann"),
        ("--bind", "/home/ann", "/home/ann"),
        ("--tmpfs", "/home/ann/.steer"),
        ("--chdir", "/home/ann"),
    ]


def test_network_off_unshares_it() -> None:
    argv = Sandbox("bwrap", network=False).wrap(Path("/ws"), ["true"])
    assert mounts(argv)[0] == ("--unshare-net",)
    assert "--unshare-net" not in Sandbox("bwrap").wrap(Path("/ws"), ["true"])


def test_toolchains_show_dot_directories_whole_and_other_directories_exactly() -> None:
    wanted = [
        HOME / ".pyenv/shims",
        HOME / ".pyenv/versions/3.11.7",  # the same toolchain again
        HOME / "src/app/.venv/bin",  # not the whole ~/src
        Path("/usr/bin"),  # not hidden: nothing to show
        HOME,  # never the whole home
        STATE / "bin",  # never the steer state
    ]
    assert toolchains(wanted, HIDDEN, keep_hidden=(STATE,)) == (
        HOME / ".pyenv",
        HOME / "src/app/.venv/bin",
    )
    # A directory under one already shown is not bound twice (a venv and its bin).
    venv = HOME / "src/app/.venv"
    assert toolchains([venv / "bin", venv, HOME / ".local/bin"], HIDDEN) == (venv, HOME / ".local")


def test_open_sandbox_proves_bwrap_runs_here(tmp_path: Path) -> None:
    sandbox = open_sandbox(tmp_path, network=False)
    assert Path(sandbox.bwrap).name == "bwrap" and not sandbox.network
    assert sandbox.hidden == (Path("/tmp"), Path.home().resolve(), tmp_path.resolve())
    ran = subprocess.run(
        sandbox.wrap(tmp_path.resolve(), ["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"]),
        capture_output=True,
        text=True,
        check=True,
    )
    # Its own PID namespace: the shell is PID 2 (bwrap's init is 1), and few PIDs exist.
    pid, count = ran.stdout.split()
    assert pid == "2" and int(count) < 10


def test_missing_or_refusing_bwrap_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match=r"no-such-bwrap not found .*bubblewrap"):
        open_sandbox(tmp_path, bwrap="no-such-bwrap")
    # A bwrap that cannot create namespaces fails its probe like `false` does.
    refusing = tmp_path / "bwrap"
    refusing.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    os.chmod(refusing, 0o755)
    with pytest.raises(SandboxUnavailable, match="cannot sandbox here: bwrap: No permissions"):
        open_sandbox(tmp_path, bwrap=str(refusing))
