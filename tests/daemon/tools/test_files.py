from __future__ import annotations

from pathlib import Path

from daemon.tools import Workspace, run_tool
from daemon.tools.files import READ_CAP_BYTES


async def read(workspace: Workspace, **tool_input: object) -> tuple[str, bool]:
    outcome = await run_tool(workspace, "read_file", tool_input)
    return outcome.content, outcome.is_error


# read_file


async def test_read_returns_the_text_exactly(workspace: Workspace, root: Path) -> None:
    (root / "a.txt").write_bytes("one\r\ntwo ünï\nthree".encode())
    assert await read(workspace, path="a.txt") == ("one\r\ntwo ünï\nthree", False)


async def test_read_window_says_where_to_continue(workspace: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    content, is_error = await read(workspace, path="a.txt", offset=3, limit=2)
    assert not is_error
    assert content == (
        "line 3\nline 4\n[showing lines 3-4; the file continues, read on with offset=5]"
    )
    assert await read(workspace, path="a.txt", offset=9, limit=5) == ("line 9\nline 10\n", False)


async def test_read_offset_past_the_end(workspace: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("x\ny\n")
    assert await read(workspace, path="a.txt", offset=3) == (
        "offset 3 is past the end of a.txt (2 lines)",
        True,
    )


async def test_read_empty_file(workspace: Workspace, root: Path) -> None:
    (root / "empty").write_bytes(b"")
    assert await read(workspace, path="empty") == ("[empty file]", False)


async def test_read_is_capped_by_size(workspace: Workspace, root: Path) -> None:
    line = "x" * 99 + "\n"
    lines = READ_CAP_BYTES // len(line) + 50
    (root / "big.txt").write_text(line * lines)
    content, is_error = await read(workspace, path="big.txt")
    assert not is_error
    shown = READ_CAP_BYTES // len(line)
    assert content.endswith(
        f"[output capped at 256 KiB: showing lines 1-{shown}; "
        f"the file continues, read on with offset={shown + 1}]"
    )
    assert len(content.encode()) < READ_CAP_BYTES + 200
    rest, _ = await read(workspace, path="big.txt", offset=shown + 1)
    assert rest == line * (lines - shown)


async def test_read_one_line_longer_than_the_cap(workspace: Workspace, root: Path) -> None:
    (root / "min.js").write_text("y" * (READ_CAP_BYTES + 10) + "\nnext\n")
    content, is_error = await read(workspace, path="min.js")
    assert not is_error
    assert content.startswith("y" * READ_CAP_BYTES + "\n[line 1 is longer than 256 KiB")
    assert content.endswith("read on with offset=2]")


async def test_read_refuses_binary_missing_and_directories(
    workspace: Workspace, root: Path
) -> None:
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (root / "sub").mkdir()
    assert await read(workspace, path="img.png") == (
        "img.png looks like a binary file; read_file only shows text",
        True,
    )
    assert await read(workspace, path="nope.txt") == ("file not found: nope.txt", True)
    content, is_error = await read(workspace, path="sub")
    assert is_error
    assert content.startswith("sub is a directory")


async def test_read_invalid_input(workspace: Workspace) -> None:
    assert await read(workspace, path="a", offset=0) == (
        "invalid input for read_file: offset: Input should be greater than or equal to 1",
        True,
    )
    assert await read(workspace, path="a", limit=0) == (
        "invalid input for read_file: limit: Input should be greater than or equal to 1",
        True,
    )
    content, is_error = await read(workspace, path="a", colour="red")
    assert is_error
    assert content == "invalid input for read_file: colour: Extra inputs are not permitted"


# write_file


async def test_write_creates_parents_and_counts_bytes(workspace: Workspace, root: Path) -> None:
    outcome = await run_tool(workspace, "write_file", {"path": "a/b/c.txt", "content": "héllo\n"})
    assert outcome.content == "created a/b/c.txt (7 bytes written)"
    assert not outcome.is_error
    assert (root / "a/b/c.txt").read_bytes() == "héllo\n".encode()

    again = await run_tool(workspace, "write_file", {"path": "a/b/c.txt", "content": "x\r\n"})
    assert again.content == "overwrote a/b/c.txt (3 bytes written)"
    assert (root / "a/b/c.txt").read_bytes() == b"x\r\n"


async def test_write_errors(workspace: Workspace, root: Path) -> None:
    (root / "d").mkdir()
    (root / "f").write_text("")
    into_dir = await run_tool(workspace, "write_file", {"path": "d", "content": "x"})
    assert (into_dir.content, into_dir.is_error) == ("d is a directory", True)
    # The filesystem's own error, with the path shown relative to the workspace.
    under_file = await run_tool(workspace, "write_file", {"path": "f/g.txt", "content": "x"})
    assert under_file.is_error
    assert under_file.content.endswith(": f")
    assert str(root) not in under_file.content


# edit_file


async def edit(workspace: Workspace, **tool_input: object) -> tuple[str, bool]:
    outcome = await run_tool(workspace, "edit_file", tool_input)
    return outcome.content, outcome.is_error


async def test_edit_replaces_one_exact_occurrence(workspace: Workspace, root: Path) -> None:
    (root / "m.py").write_text("def f():\n    return 1\n")
    assert await edit(workspace, path="m.py", old="return 1", new="return 2") == (
        "replaced 1 occurrence in m.py",
        False,
    )
    assert (root / "m.py").read_text() == "def f():\n    return 2\n"


async def test_edit_needs_a_unique_match_unless_replace_all(
    workspace: Workspace, root: Path
) -> None:
    (root / "m.py").write_text("x = 1\nx = 1\nx = 1\n")
    content, is_error = await edit(workspace, path="m.py", old="x = 1", new="x = 2")
    assert is_error
    assert content.startswith("old text occurs 3 times in m.py")
    assert (root / "m.py").read_text() == "x = 1\nx = 1\nx = 1\n"

    assert await edit(workspace, path="m.py", old="x = 1", new="y", replace_all=True) == (
        "replaced 3 occurrences in m.py",
        False,
    )
    assert (root / "m.py").read_text() == "y\ny\ny\n"


async def test_edit_errors(workspace: Workspace, root: Path) -> None:
    (root / "m.py").write_text("a = 1\n")
    (root / "blob").write_bytes(b"a\0b")
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))

    content, is_error = await edit(workspace, path="m.py", old="a =  1", new="b")
    assert is_error
    assert content.startswith("old text not found in m.py")
    assert await edit(workspace, path="m.py", old="a", new="a") == (
        "old and new are identical; there is nothing to change",
        True,
    )
    assert await edit(workspace, path="missing.py", old="a", new="b") == (
        "file not found: missing.py",
        True,
    )
    content, is_error = await edit(workspace, path="blob", old="a", new="b")
    assert (is_error, "binary" in content) == (True, True)
    content, is_error = await edit(workspace, path="latin1.txt", old="caf", new="b")
    assert (is_error, "not valid UTF-8" in content) == (True, True)
    content, is_error = await edit(workspace, path="m.py", old="", new="b")
    assert is_error
    assert content.startswith("invalid input for edit_file: old:")
    assert (root / "m.py").read_text() == "a = 1\n"
