from __future__ import annotations

import pytest

from daemon.tools import ToolError
from daemon.tools.tree import compile_glob


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*", "a.txt", True),
        ("**/*", "a/b/c.txt", True),
        ("*.py", "m.py", True),
        ("*.py", "pkg/sub/m.py", True),  # no slash: a file name at any depth
        ("*.py", "m.pyc", False),
        ("src/*.py", "src/m.py", True),
        ("src/*.py", "src/sub/m.py", False),
        ("src/**/*.py", "src/m.py", True),
        ("src/**/*.py", "src/a/b/m.py", True),
        ("src/**", "src/a/b/m.txt", True),
        ("src/**", "lib/src/a", False),
        ("./src/*.py", "src/m.py", True),
        ("?.md", "a.md", True),
        ("a/?.md", "a/ab.md", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "c.txt", True),
        ("[!ab].txt", "a.txt", False),
        ("[[].txt", "[.txt", True),
        ("x[.txt", "x[.txt", True),  # an unclosed bracket is literal
        ("a+b(1).txt", "a+b(1).txt", True),
    ],
)
def test_glob_matching(pattern: str, path: str, expected: bool) -> None:
    assert compile_glob(pattern)(path) is expected


@pytest.mark.parametrize("pattern", ["/etc/*", "../*", "a/../../b"])
def test_glob_must_stay_relative(pattern: str) -> None:
    with pytest.raises(ToolError, match="relative to the workspace"):
        compile_glob(pattern)


def test_invalid_glob_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="invalid glob"):
        compile_glob("[z-a].txt")
