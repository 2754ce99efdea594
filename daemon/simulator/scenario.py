"""Scripted agents: the scenario file format, loading, and choosing one per request.

A scenario is a JSON file::

    {"name": "demo",
     "match": "--verbose",            # substring of the first user message; null = default
     "turns": [{"text": "...", "tool_calls": [{"name": "read_file", "input": {...}}],
                "token_rate": 5}],           # optional: stream this turn slowly
     "after_script": "end",           # or "loop": wrap around to the first turn
     "ack_template": "Noted: {text}", # how a nudge is acknowledged
     "final_text": "All done."}       # the end_turn reply once an "end" script ran out

Scenarios come from an optional directory (``--scenarios DIR``) and from the bundled
``scenarios/`` package data; a directory scenario replaces a bundled one of the same
name and is tried first. When several match, the one matched earliest in the message
answers. The choice depends on the request alone, so a restarted
simulator picks up every conversation where it was.

The bundled ``default`` and ``demo`` scripts open with a planning turn of over 512
tokens: from the second request on, a conversation clears the default model's
minimum cacheable length whatever the task text, so cache figures always show.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.simulator.request import content_blocks


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file."""


class ToolCall(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    input: dict[str, object] = Field(default_factory=dict)


class Turn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    #: Stream this turn at this many tokens per second (a slow model to interrupt),
    #: unless it acknowledges an operator note: a redirected agent gets on with it.
    token_rate: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _says_something(self) -> Turn:
        if not self.text and not self.tool_calls:
            raise ValueError("a turn needs text or tool_calls")
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    match: str | None = Field(default=None, min_length=1)
    turns: tuple[Turn, ...] = Field(min_length=1)
    after_script: Literal["end", "loop"] = "end"
    ack_template: str = "Noted: {text}"
    final_text: str = Field(default="All done.", min_length=1)

    def turn(self, index: int) -> Turn:
        """The scripted turn for a reply after ``index`` earlier assistant turns."""
        if index < len(self.turns):
            return self.turns[index]
        if self.after_script == "loop":
            return self.turns[index % len(self.turns)]
        return Turn(text=self.final_text)


class ScenarioBook:
    """The scenarios in matching order; at least one is a default (``match`` null)."""

    def __init__(self, scenarios: Sequence[Scenario]) -> None:
        self.scenarios = tuple(scenarios)
        default = next((s for s in self.scenarios if s.match is None), None)
        if default is None:
            raise ScenarioError('no default scenario (one with "match": null)')
        self.default = default

    @classmethod
    def load(cls, directory: Path | None = None) -> ScenarioBook:
        """The directory's scenarios first, then the bundled ones not overridden by name."""
        if directory is not None and not directory.is_dir():
            raise ScenarioError(f"{directory}: not a directory")
        own = _load_all(sorted(directory.glob("*.json"))) if directory is not None else []
        names = {scenario.name for scenario in own}
        bundled = [s for s in _load_all(_bundled_files()) if s.name not in names]
        return cls([*own, *bundled])

    def select(self, messages: Sequence[Mapping[str, object]]) -> Scenario:
        """The scenario whose ``match`` comes first in the first user message (a tie
        goes to the one tried first): a task that quotes another task, marker and all,
        after its own marker keeps its own script."""
        text = first_user_text(messages)
        found = [
            (text.find(scenario.match), order)
            for order, scenario in enumerate(self.scenarios)
            if scenario.match is not None and scenario.match in text
        ]
        return self.scenarios[min(found)[1]] if found else self.default


def first_user_text(messages: Sequence[Mapping[str, object]]) -> str:
    for message in messages:
        if message.get("role") == "user":
            blocks = content_blocks(message.get("content"))
            return "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    return ""


def _bundled_files() -> list[Traversable]:
    folder = resources.files("daemon.simulator").joinpath("scenarios")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)


def _load_all(files: Iterable[Path | Traversable]) -> list[Scenario]:
    scenarios: list[Scenario] = []
    for file in files:
        try:
            scenarios.append(Scenario.model_validate(json.loads(file.read_text("utf-8"))))
        except (OSError, ValueError) as exc:  # pydantic.ValidationError is a ValueError
            raise ScenarioError(f"{file}: {exc}") from exc
    return scenarios
