from __future__ import annotations

from pathlib import Path

import pytest

from daemon.tools import ToolError, Workspace, run_tool


def test_relative_paths_resolve_inside_the_root(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve("a/b.txt") == root / "a" / "b.txt"
    assert workspace.resolve(".") == root
    assert workspace.resolve("a/../b.txt") == root / "b.txt"


def test_absolute_path_inside_the_root_is_allowed(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve(str(root / "x.py")) == root / "x.py"


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../x", "..", "/etc/passwd"])
def test_paths_outside_are_refused(workspace: Workspace, path: str) -> None:
    with pytest.raises(ToolError) as info:
        workspace.resolve(path)
    assert str(info.value) == f"path is outside the workspace: {path}"


def test_symlink_that_escapes_is_refused(workspace: Workspace, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    (root / "dir_link").symlink_to(outside)
    (root / "file_link").symlink_to(outside / "secret")
    for path in ("dir_link/secret", "file_link", "dir_link/new.txt"):
        with pytest.raises(ToolError, match="outside the workspace"):
            workspace.resolve(path)


def test_symlink_within_the_root_is_allowed(workspace: Workspace, root: Path) -> None:
    (root / "real").mkdir()
    (root / "link").symlink_to(root / "real")
    assert workspace.resolve("link/f") == root / "real" / "f"


def test_nul_byte_is_a_tool_error(workspace: Workspace) -> None:
    with pytest.raises(ToolError, match="invalid path"):
        workspace.resolve("a\0b")


def test_root_is_resolved_and_must_be_a_directory(tmp_path: Path, root: Path) -> None:
    (tmp_path / "alias").symlink_to(root)
    assert Workspace(tmp_path / "alias").root == root.resolve()
    with pytest.raises(NotADirectoryError):
        Workspace(tmp_path / "missing")


async def test_tools_report_escapes_to_the_model(
    workspace: Workspace, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.txt").write_text("no")
    read = await run_tool(workspace, "read_file", {"path": "../outside.txt"})
    assert read.is_error
    assert read.content == "path is outside the workspace: ../outside.txt"

    target = tmp_path / "created.txt"
    write = await run_tool(workspace, "write_file", {"path": str(target), "content": "x"})
    assert write.is_error
    assert not target.exists()

    search = await run_tool(workspace, "search", {"pattern": "no", "path": ".."})
    assert search.is_error
