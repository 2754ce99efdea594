"""Subagents: the `spawn_agents` tool an agent uses to split its work, and the report
its children's outcomes make for it.

The model chooses how to split the work: it gives each child a task (and a label);
the daemon runs the children concurrently, up to the session's cap, and hands their
final reports back as the tool's result, in the order asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from daemon.agent_core import SPAWN_TOOL, veto_report
from daemon.agent_state import AgentConfig, AgentState
from protocol.checks import CheckCommand
from protocol.sessions import MAX_TASK_CHARS

#: Agents at this depth (the root is 0) get no spawn_agents tool.
MAX_DEPTH = 2
MAX_CHILDREN_PER_CALL = 8


class ChildTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    name: str | None = Field(default=None, min_length=1, max_length=40)
    check: CheckCommand | None = Field(
        default=None,
        description=(
            "A shell command that must exit 0 for this subagent's work to count as done "
            "(the session's checks when left out)"
        ),
    )


class SpawnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: list[ChildTask] = Field(min_length=1, max_length=MAX_CHILDREN_PER_CALL)


SPAWN_SPEC: dict[str, JsonValue] = {
    "name": SPAWN_TOOL,
    "description": (
        "Start subagents that work on parts of your task in parallel, each in its own "
        "conversation with the same tools and working directory, and wait for all of "
        "them. Give each a complete, self-contained task: they do not see your "
        "conversation. The result holds each subagent's final report, in order. Use it "
        "for independent pieces of work; do the rest yourself."
    ),
    "input_schema": SpawnRequest.model_json_schema(),
}


def parse_spawn(tool_input: dict[str, JsonValue]) -> SpawnRequest | str:
    """The request, or what is wrong with it (for the model to correct)."""
    try:
        return SpawnRequest.model_validate(tool_input)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid input for {SPAWN_TOOL}: {problems}"


def report(children: Sequence[tuple[AgentConfig, AgentState, str]]) -> str:
    """The spawn_agents result: one section per child, in the order they were asked for."""
    sections = []
    for config, state, last_words in children:
        label = f"{config.agent} ({config.name})" if config.name else config.agent
        match state.status:
            case "done":
                outcome = f"done, {_verification(config, state)}"
                body = last_words or "(it ended without a report)"
            case "vetoed":
                outcome = veto_report(state.veto_reason)
                body = ""
            case _ if state.checks is not None and not state.checks.passed:
                outcome = state.error or f"failed {_commands(config)}"
                body = f"{last_words}\n\n{_evidence(state)}".strip()
            case _:
                outcome = f"failed: {state.error or state.status}"
                body = last_words
        sections.append(f"## {label}: {outcome}\n{body}".rstrip())
    return "\n\n".join(sections)


def _commands(config: AgentConfig) -> str:
    return "; ".join(config.checks)


def _verification(config: AgentConfig, state: AgentState) -> str:
    """Whether the daemon checked the child's work: what its parent may rely on."""
    if not config.checks:
        return "not verified"
    if state.checks is not None and state.checks.passed:
        return f"verified by {_commands(config)}"
    return f"not verified ({_commands(config)} did not pass)"


def _evidence(state: AgentState) -> str:
    """The failing checks' output, as the child last saw it."""
    report = state.checks
    if report is None:
        return ""
    parts = []
    for run in report.runs:
        if not run.passed:
            ended = "timed out" if run.exit_code is None else f"exit {run.exit_code}"
            parts.append(f"$ {run.command} ({ended})\n{run.output_tail[-1_500:]}".rstrip())
    return "\n".join(parts)
