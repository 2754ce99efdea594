"""Every frame in docs/protocol.md's worked example is a valid frame of its direction."""

from __future__ import annotations

import re
from pathlib import Path

from protocol.commands import COMMAND_ADAPTER
from protocol.websocket import SERVER_MESSAGE_ADAPTER

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def example_lines() -> list[str]:
    blocks = re.findall(r"```jsonl\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_worked_example_is_made_of_valid_frames() -> None:
    lines = example_lines()
    assert len(lines) > 10
    for line in lines:
        direction, _, text = line.partition(" ")
        if direction == "<":
            SERVER_MESSAGE_ADAPTER.validate_json(text)
        elif direction == ">" and '"type":"veto"}' not in text:  # the example of a bad one
            COMMAND_ADAPTER.validate_json(text)
        else:
            assert direction == ">", line
