from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from daemon.tools import TOOL_SPECS, ToolOutcome, Workspace, run_tool

TOOL_NAMES = ["read_file", "write_file", "edit_file", "list_files", "search", "run_command"]

_DUMP = "import json; from daemon.tools import TOOL_SPECS; print(json.dumps(TOOL_SPECS))"


def test_specs_are_in_a_fixed_order_with_object_schemas() -> None:
    assert [spec["name"] for spec in TOOL_SPECS] == TOOL_NAMES
    for spec in TOOL_SPECS:
        assert set(spec) == {"name", "description", "input_schema"}
        schema = spec["input_schema"]
        assert isinstance(schema, dict)
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert isinstance(spec["description"], str)
        assert spec["description"]


def test_specs_are_byte_identical_across_processes() -> None:
    # The prompt cache keys on the exact bytes of the tools; hash seeds must not matter.
    dumps = {
        subprocess.run(
            [sys.executable, "-c", _DUMP],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert dumps == {json.dumps(TOOL_SPECS)}


async def test_unknown_tool_is_reported_to_the_model(workspace: Workspace) -> None:
    assert await run_tool(workspace, "rm_rf", {}) == ToolOutcome(
        "unknown tool 'rm_rf'; available: " + ", ".join(TOOL_NAMES), is_error=True
    )


@pytest.mark.parametrize(
    ("name", "tool_input", "message"),
    [
        ("read_file", {}, "invalid input for read_file: path: Field required"),
        ("write_file", {"path": "a", "content": 3}, "content: Input should be a valid string"),
        ("search", {"pattern": "x", "glob": 1}, "glob: Input should be a valid string"),
        ("list_files", {"pattern": ""}, "pattern: String should have at least 1 character"),
    ],
)
async def test_invalid_input_is_reported_to_the_model(
    workspace: Workspace, name: str, tool_input: dict[str, object], message: str
) -> None:
    outcome = await run_tool(workspace, name, tool_input)
    assert outcome.is_error
    assert message in outcome.content
