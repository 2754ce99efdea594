"""A workspace in a fresh temporary directory, with room outside it for escape tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.tools import Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def workspace(root: Path) -> Workspace:
    return Workspace(root)
