"""What greet should do; the --verbose flag is not implemented yet."""

from __future__ import annotations

import pytest
from cli import main


def test_greets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["Ada"]) == 0
    assert capsys.readouterr().out == "Hello, Ada!\n"


def test_verbose_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--verbose", "Ada"]) == 0
    assert capsys.readouterr().out == "greeting Ada\nHello, Ada!\n"
