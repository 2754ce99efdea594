"""Acceptance checks: the commands that decide whether an agent's work is done, and the
evidence of each run.

A session (or a subagent) may carry checks. When its agent ends its turn, the daemon,
not the agent, runs every check in the workdir; "done" means every one exited 0. A
failure goes back to the agent as a nudge, until the same failure comes twice or the
attempts run out: then the session waits as `needs_human` with the evidence.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_CHECKS = 8
MAX_CHECK_CHARS = 4_096
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS = 20
DEFAULT_CHECK_TIMEOUT_S = 600
MAX_CHECK_TIMEOUT_S = 3_600

#: One check: a shell command line, run with /bin/sh -c in the workdir.
CheckCommand = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CHECK_CHARS,
        # Not blank, and no NUL: a command line cannot hold one.
        pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
        description="a shell command line; exit code 0 passes",
    ),
]

#: passed: every check exited 0; retry: a failure went back to the agent as a nudge;
#: needs_human: the same failure twice, or attempts used up (a session's root agent);
#: failed: attempts used up by a subagent, which reports the failure to its parent.
CheckVerdict = Literal["passed", "retry", "needs_human", "failed"]


class CheckRun(BaseModel):
    """One check command's run: what a "done" (or a refusal) rests on."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    command: str
    #: None when it was killed at its timeout.
    exit_code: int | None
    duration_s: float
    #: The end of its combined stdout and stderr.
    output_tail: str
    #: sha256 of its whole output as captured: the same digest twice is the same failure.
    digest: str
    passed: bool


class CheckReport(BaseModel):
    """One round of an agent's checks, and the workspace they ran on."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: 1 for the first round after the agent's first "done", and so on.
    attempt: int
    runs: list[CheckRun]
    #: For a git workdir the commit and `git diff --stat`; else a digest of the files.
    workspace: str
    finished_at: float
    passed: bool
    #: sha256 over the failing runs' commands and digests ("" when all passed).
    digest: str
