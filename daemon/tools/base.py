"""What a tool is: a pydantic input model that knows its name and how to run.

A tool's class docstring is the description the model reads, and its fields (with their
descriptions) are the input schema, so one class holds everything the registry needs.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from daemon.tools.limits import DEFAULT_TIME_LIMIT_S
from daemon.tools.workspace import Workspace


class ToolInput(BaseModel):
    """Base of the tools: subclasses set `tool_name`, declare fields and implement `run`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool_name: ClassVar[str]
    #: Wall-clock seconds `run_tool` waits for `run` before it reports a timeout.
    time_limit_s: ClassVar[float] = DEFAULT_TIME_LIMIT_S

    @classmethod
    def tool_description(cls) -> str:
        """The docstring, each paragraph on one line (its wrapping is for the source only)."""
        paragraphs = inspect.cleandoc(cls.__doc__ or "").split("\n\n")
        return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)

    @abstractmethod
    async def run(self, workspace: Workspace) -> str:
        """Do the work; raise ToolError for anything the model should hear about."""
