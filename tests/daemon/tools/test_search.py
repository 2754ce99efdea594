from __future__ import annotations

from pathlib import Path

from daemon.tools import Workspace, run_tool
from daemon.tools.search import LIST_CAP, MATCH_CAP, MATCH_LINE_CHARS


def make_tree(root: Path, files: dict[str, bytes | str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


async def call(workspace: Workspace, name: str, **tool_input: object) -> tuple[str, bool]:
    outcome = await run_tool(workspace, name, tool_input)
    return outcome.content, outcome.is_error


TREE: dict[str, bytes | str] = {
    "README.md": "# demo\nTODO: docs\n",
    "src/app.py": "import os\n\ndef main():\n    return 'todo'  # TODO: real work\n",
    "src/pkg/util.py": "def helper():\n    pass\n",
    "src/data.bin": b"TODO\0\x01\x02",
    ".github/ci.yml": "on: push # TODO\n",
    ".git/config": "TODO\n",
    ".venv/lib/x.py": "TODO\n",
    "node_modules/m/index.js": "// TODO\n",
    "src/__pycache__/app.cpython-311.pyc": b"TODO\0",
}


# list_files


async def test_list_all_files_sorted_skipping_noise(workspace: Workspace, root: Path) -> None:
    make_tree(root, TREE)
    assert await call(workspace, "list_files") == (
        ".github/ci.yml\nREADME.md\nsrc/app.py\nsrc/data.bin\nsrc/pkg/util.py",
        False,
    )


async def test_list_with_patterns(workspace: Workspace, root: Path) -> None:
    make_tree(root, TREE)
    assert await call(workspace, "list_files", pattern="*.py") == (
        "src/app.py\nsrc/pkg/util.py",
        False,
    )
    assert await call(workspace, "list_files", pattern="src/*.py") == ("src/app.py", False)
    assert await call(workspace, "list_files", pattern="*.rs") == ("no files match *.rs", False)
    content, is_error = await call(workspace, "list_files", pattern="../*")
    assert is_error
    assert "relative to the workspace" in content


async def test_list_leaves_out_symlinks_that_escape(
    workspace: Workspace, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("s")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "f").write_text("f")
    (root / "real.txt").write_text("r")
    (root / "alias.txt").symlink_to(root / "real.txt")
    (root / "leak").symlink_to(tmp_path / "secret")
    (root / "leakdir").symlink_to(tmp_path / "outdir")
    assert await call(workspace, "list_files") == ("alias.txt\nreal.txt", False)


async def test_list_is_capped(workspace: Workspace, root: Path) -> None:
    for n in range(LIST_CAP + 5):
        (root / f"f{n:05}.txt").write_text("")
    content, is_error = await call(workspace, "list_files")
    lines = content.splitlines()
    assert not is_error
    assert len(lines) == LIST_CAP + 1
    assert lines[0] == "f00000.txt"
    assert (
        lines[-1] == f"[showing {LIST_CAP} of {LIST_CAP + 5} files, 5 left out; narrow the pattern]"
    )


# search


async def test_search_reports_path_line_and_text(workspace: Workspace, root: Path) -> None:
    make_tree(root, TREE)
    # Walk order: a directory's files, then its subdirectories, each sorted.
    assert await call(workspace, "search", pattern="TODO") == (
        "README.md:2: TODO: docs\n"
        ".github/ci.yml:1: on: push # TODO\n"
        "src/app.py:4:     return 'todo'  # TODO: real work",
        False,
    )
    assert await call(workspace, "search", pattern="(?i)todo", path="src/app.py") == (
        "src/app.py:4:     return 'todo'  # TODO: real work",
        False,
    )


async def test_search_narrowed_by_path_and_glob(workspace: Workspace, root: Path) -> None:
    make_tree(root, TREE)
    assert await call(workspace, "search", pattern="def ", path="src/pkg") == (
        "src/pkg/util.py:1: def helper():",
        False,
    )
    assert await call(workspace, "search", pattern="TODO", glob="*.md") == (
        "README.md:2: TODO: docs",
        False,
    )
    assert await call(workspace, "search", pattern="TODO", path="src", glob="*.md") == (
        "no matches for TODO in src",
        False,
    )


async def test_search_errors(workspace: Workspace, root: Path) -> None:
    make_tree(root, TREE)
    content, is_error = await call(workspace, "search", pattern="(unclosed")
    assert is_error
    assert content.startswith("invalid regular expression '(unclosed': missing ), unterminated")
    assert await call(workspace, "search", pattern="x", path="nope") == (
        "no such file or directory: nope",
        True,
    )
    content, is_error = await call(workspace, "search", pattern="x", glob="[z-a]")
    assert is_error
    assert content.startswith("invalid glob")


async def test_search_is_capped(workspace: Workspace, root: Path) -> None:
    (root / "many.txt").write_text("hit\n" * (MATCH_CAP + 10))
    (root / "wide.txt").write_text("hit" + "w" * 1000 + "\n")
    content, is_error = await call(workspace, "search", pattern="hit")
    lines = content.splitlines()
    assert not is_error
    assert len(lines) == MATCH_CAP + 1
    assert lines[-2] == f"many.txt:{MATCH_CAP}: hit"
    assert lines[-1] == f"[stopped after {MATCH_CAP} matches; narrow the pattern, path or glob]"

    wide, _ = await call(workspace, "search", pattern="hit", path="wide.txt")
    assert wide == "wide.txt:1: hit" + "w" * (MATCH_LINE_CHARS - 3) + "…"
