"""Errors of the agent tools.

    Exception
    └── ToolError   the model asked for something that cannot be done: a path outside
                    the workspace, text not found, a command that timed out. `run_tool`
                    turns it into a `tool_result` with `is_error`, so the model can react.

Errors the model can cause but that are not raised as `ToolError` are reported the same
way by `run_tool`: an unknown tool name, input that fails validation, `OSError` from
the filesystem (permission denied, no such file), and a call past its time limit.
Anything else that escapes a tool is a bug in steer and propagates to the caller.
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool could not do what the model asked; the message is written for the model."""
