"""The README's install, for real: the checkout installed (not editable) into a fresh,
empty virtualenv, and its `steer` and `nudge` run from there and nowhere else.

`pipx install .` and `uv tool install .` make such a virtualenv and run this same
`pip install` of the checkout in it; pip's wheel cache makes the dependencies quick.
The checkout is copied first (the files git tracks or would track), so that building
it writes no `build/` into the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.steer_process import SCENARIOS

REPO = Path(__file__).resolve().parent.parent


def _copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.mark.timeout(600)
def test_a_regular_install_runs_start_status_nudge_stop(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    checkout, venv = tmp_path / "checkout", tmp_path / "venv"
    _copy_checkout(checkout)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    bin_dir = venv / "bin"
    installed = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--disable-pip-version-check", checkout],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "STEER_"))}
    env |= {
        "STEER_HOME": str(tmp_path / "home"),
        "STEER_REDIS_URL": redis_url,
        "STEER_KEY_PREFIX": key_prefix,
        "STEER_SIM_TOKEN_RATE": "0",
        "STEER_SIM_SCENARIOS": str(SCENARIOS),
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",  # this environment's commands only
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # Not from the checkout's directory: `python -c` would import its `daemon`.
        return subprocess.run(
            args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90
        )

    # The installed package, not the checkout: its files live in the venv.
    where = run("python", "-c", "import daemon; print(daemon.__file__)").stdout
    assert where.startswith(str(venv)), where

    assert run("steer", "--version").stdout == "steer 0.1.0\n"
    assert run("nudge", "--version").stdout == "nudge 0.1.0\n"
    started = run("steer", "start")
    try:
        assert started.returncode == 0, started.stderr
        status = run("steer", "status")
        assert status.returncode == 0 and "daemon: running" in status.stdout, status.stdout
        session = run("steer", "run", "hello", "--workdir", str(tmp_path))
        assert session.returncode == 0, session.stderr
        sent = run("nudge", session.stdout.strip(), "no casts")
        assert sent.returncode == 0 and sent.stdout.startswith("n-"), sent.stderr
    finally:
        stopped = run("steer", "stop")
    assert stopped.returncode == 0 and "stopped: pid" in stopped.stdout, stopped.stderr
    assert run("steer", "status").returncode == 3
