from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.tools import Workspace, run_tool
from daemon.tools.limits import Abandoned, Stop
from daemon.tools.regex import LinePattern
from daemon.tools.search import (
    CHUNK_BYTES,
    LIST_CAP,
    MATCH_CAP,
    MATCH_LINE_CHARS,
    list_files,
    search,
)


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
    assert content == "invalid regular expression '(unclosed': missing ): (unclosed"
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


# search: RE2, line by line


async def test_catastrophic_patterns_complete(workspace: Workspace, root: Path) -> None:
    # Each takes `re` exponential time on these lines (about 15 s for the first at 28 a's).
    (root / "evil.txt").write_text(("a" * 5000 + "!\n") * 3 + "aaaa\n")
    (root / "dirs.txt").write_text("x" * 5000 + "\n")
    assert await call(workspace, "search", pattern="(a+)+$") == ("evil.txt:4: aaaa", False)
    assert await call(workspace, "search", pattern="^(a|aa)*$", path="evil.txt") == (
        "evil.txt:4: aaaa",
        False,
    )
    assert await call(workspace, "search", pattern="(x+x+)+y") == (
        "no matches for (x+x+)+y in .",
        False,
    )


async def test_catastrophic_globs_complete(workspace: Workspace, root: Path) -> None:
    # As a backtracking regex this glob takes seconds on a 40-character name.
    (root / ("a" * 200)).write_text("hit\n")
    glob = "*a*a*a*a*a*a*a*a*a*a*a*a*b"
    assert await call(workspace, "list_files", pattern=glob) == (f"no files match {glob}", False)
    assert await call(workspace, "search", pattern="hit", glob=glob) == (
        "no matches for hit in .",
        False,
    )


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("foo(?=bar)", "lookahead ((?=...), (?!...)) is not supported"),
        ("foo(?!bar)", "lookahead ((?=...), (?!...)) is not supported"),
        ("(?<=foo)bar", "lookbehind ((?<=...), (?<!...)) is not supported"),
        ("(?<!foo)bar", "lookbehind ((?<=...), (?<!...)) is not supported"),
        (r"(\w)\1", r"backreferences (\1, (?P=name)) are not supported"),
        ("(?P<q>['\"]).*(?P=q)", r"backreferences (\1, (?P=name)) are not supported"),
        (r"end\Z", r"\Z is not supported; use $ for the end of a line"),
    ],
)
async def test_unsupported_syntax_is_named(
    workspace: Workspace, root: Path, pattern: str, problem: str
) -> None:
    (root / "a.txt").write_text("foobar\n")
    assert await call(workspace, "search", pattern=pattern) == (
        f"unsupported regular expression {pattern!r}: {problem}. search uses RE2 syntax, which"
        " matches in linear time and so has no lookaround or backreferences",
        True,
    )


async def test_each_line_is_matched_on_its_own(workspace: Workspace, root: Path) -> None:
    (root / "a.txt").write_bytes(b"one two\r\nthree\n\nfour\r\nlast two")
    for pattern, lines in [
        ("two$", [1, 5]),
        (r"two\z", [1, 5]),  # matched line by line, with the same answers
        ("^t", [2]),
        (r"\At", [2]),
        ("(?-m)^t", [2]),
        ("^$", [3]),
        (r"two\s+three", []),  # no match spans a newline, however it is spelt
        ("two[^x]three", []),
        (r"two\Cthree", []),
        ("(?s)two.three", []),
    ]:
        content, is_error = await call(workspace, "search", pattern=pattern)
        assert not is_error
        found = [int(line.split(":")[1]) for line in content.splitlines()] if lines else []
        assert found == lines, pattern
    assert await call(workspace, "search", pattern="two$") == (
        "a.txt:1: one two\na.txt:5: last two",
        False,
    )


async def test_bytes_that_are_not_utf8_match_as_replacement_characters(
    workspace: Workspace, root: Path
) -> None:
    (root / "latin1.txt").write_bytes("café\nnaïve\n".encode("latin-1"))
    assert await call(workspace, "search", pattern="caf.$") == ("latin1.txt:1: caf\ufffd", False)


async def test_line_numbers_carry_across_chunks(workspace: Workspace, root: Path) -> None:
    lines = ["filler line"] * (2 * CHUNK_BYTES // 12)
    lines[1] = "hit early"
    lines[-2] = "hit late"
    (root / "big.txt").write_text("\n".join(lines) + "\n" + "y" * (3 * CHUNK_BYTES) + "\nhit end")
    n = len(lines)
    assert await call(workspace, "search", pattern="^hit") == (
        f"big.txt:2: hit early\nbig.txt:{n - 1}: hit late\nbig.txt:{n + 2}: hit end",
        False,
    )
    assert await call(workspace, "search", pattern="^y+$") == (
        f"big.txt:{n + 1}: " + "y" * MATCH_LINE_CHARS + "…",
        False,
    )


def test_a_search_nobody_awaits_stops(workspace: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("hit\n")
    stop = Stop()
    assert search(stop, workspace, "hit") == "a.txt:1: hit"
    stop.set()
    with pytest.raises(Abandoned):
        search(stop, workspace, "hit")
    with pytest.raises(Abandoned):
        list_files(stop, workspace)


LINES = st.lists(st.text(alphabet="ab _", max_size=6), max_size=8)
PATTERNS = [
    "a",
    "^a",
    "b$",
    "^$",
    "^",
    "$",
    r"\bab\b",
    r"a\B",
    "a b",
    "[^a]",
    ".$",
    "a*",
    "^(a|b)+$",
]


@settings(max_examples=300, deadline=None)
@given(lines=LINES, pattern=st.sampled_from(PATTERNS), final_newline=st.booleans())
def test_a_chunk_matches_like_its_lines_one_by_one(
    lines: list[str], pattern: str, final_newline: bool
) -> None:
    chunk = ("\n".join(lines) + ("\n" if final_newline else "")).encode()
    lines = chunk.decode().split("\n")
    if lines[-1] == "":
        lines.pop()  # after the final newline, or an empty file: not a line
    # What the old search did: Python's re on each line (these patterns mean the same in both).
    expected = [i for i, line in enumerate(lines) if re.search(pattern, line)]

    def line_numbers(found: Iterator[tuple[int, int]]) -> list[int]:
        return [chunk.count(b"\n", 0, start) for start, _ in found]

    assert line_numbers(LinePattern(pattern).lines(chunk)) == expected
    # (?-s) clears a flag that is already clear, so only the path taken differs.
    assert line_numbers(LinePattern(f"(?-s){pattern}").lines(chunk)) == expected
