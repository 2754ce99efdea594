"""Agent tools, scoped to a session's working directory.

`TOOL_SPECS` goes into every model request unchanged; `run_tool` runs one tool_use block
and returns the tool_result content. The tools: read_file, write_file, edit_file,
list_files, search and run_command.
"""

from __future__ import annotations

from daemon.tools.errors import ToolError
from daemon.tools.registry import TOOL_SPECS, ToolOutcome, run_tool
from daemon.tools.workspace import Workspace

__all__ = ["TOOL_SPECS", "ToolError", "ToolOutcome", "Workspace", "run_tool"]
