"""The tool set offered to the model: its definitions and the one entry point that runs them.

`TOOL_SPECS` is built once at import from the input models, in a fixed order, so every
request carries byte-identical tools and the prompt cache holds. Treat it as read-only.

`run_tool` never raises for anything the model did wrong: unknown names, invalid input,
ToolError and filesystem errors all come back as an `is_error` outcome, and so does a
call that outlives its wall-clock limit (see limits.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from daemon.tools.base import ToolInput
from daemon.tools.errors import ToolError
from daemon.tools.files import EditFile, ReadFile, WriteFile
from daemon.tools.search import ListFiles, Search
from daemon.tools.shell import RunCommand
from daemon.tools.workspace import Workspace

#: How long past its own timeout run_command may take to kill its process group and return.
COMMAND_GRACE_S = 10.0

_TOOLS: dict[str, type[ToolInput]] = {
    tool.tool_name: tool for tool in (ReadFile, WriteFile, EditFile, ListFiles, Search, RunCommand)
}


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What goes back to the model as a tool_result."""

    content: str
    is_error: bool


def _spec(tool: type[ToolInput]) -> dict[str, object]:
    schema = tool.model_json_schema()
    # The description lives at the top of the spec; titles and null defaults are noise the
    # model would pay for on every request.
    schema.pop("title", None)
    schema.pop("description", None)
    properties: dict[str, dict[str, object]] = schema["properties"]
    for prop in properties.values():
        prop.pop("title", None)
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    return {"name": tool.tool_name, "description": tool.tool_description(), "input_schema": schema}


TOOL_SPECS: list[dict[str, object]] = [_spec(tool) for tool in _TOOLS.values()]


async def run_tool(
    workspace: Workspace, name: str, tool_input: Mapping[str, object]
) -> ToolOutcome:
    tool = _TOOLS.get(name)
    if tool is None:
        return ToolOutcome(f"unknown tool {name!r}; available: {', '.join(_TOOLS)}", True)
    try:
        args = tool.model_validate(dict(tool_input))
    except ValidationError as exc:
        return ToolOutcome(f"invalid input for {name}: {_describe(exc)}", True)
    return await run_call(workspace, args)


async def run_call(workspace: Workspace, args: ToolInput) -> ToolOutcome:
    """Run one validated call within its time limit. Cancelling the caller cancels the call."""
    limit = limit_for(args)
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            content = await args.run(workspace)
    except ToolError as exc:
        return ToolOutcome(str(exc), True)
    except TimeoutError as exc:  # an OSError too, when the filesystem raises it
        if deadline.expired():
            return ToolOutcome(f"{args.tool_name} timed out after {limit:g} s", True)
        return ToolOutcome(workspace.describe_os_error(exc), True)
    except OSError as exc:
        return ToolOutcome(workspace.describe_os_error(exc), True)
    return ToolOutcome(content, False)


def limit_for(args: ToolInput) -> float:
    """The call's wall-clock limit in seconds."""
    if isinstance(args, RunCommand):
        # Its own timeout kills the command and keeps its output; this is the backstop.
        return args.timeout_s + COMMAND_GRACE_S
    return args.time_limit_s


def _describe(exc: ValidationError) -> str:
    """One message per field, e.g. `offset: Input should be greater than or equal to 1`."""
    messages: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        # Optional fields fail as a union (value branch, then None branch); the first
        # message for a field is the useful one.
        field = str(error["loc"][0]) if error["loc"] else "input"
        messages.setdefault(field, error["msg"])
    return "; ".join(f"{field}: {msg}" for field, msg in messages.items())
