"""What greet should do; the --verbose flag is not implemented yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = Path(__file__).with_name("cli.py")


def greet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLI), *args], capture_output=True, text=True, check=False
    )


def test_greets() -> None:
    result = greet("Ada")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, Ada!\n"


def test_verbose_says_what_it_does() -> None:
    result = greet("--verbose", "Ada")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "greeting Ada\nHello, Ada!\n"


if __name__ == "__main__":  # the demo session's acceptance check: python3 test_cli.py
    test_greets()
    test_verbose_says_what_it_does()
    print("2 passed")
