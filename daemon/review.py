"""The review loop's texts and rules: what a reviewer is told and may use, and how its
answer is read.

Once a session's root agent has passed its checks (or ended its turn, without checks),
a fresh reviewer, a subagent of its own with read-only tools, tries to refute the
work. Its findings go back to the root agent as a note; the loop ends at a fixed
point (nothing found, or the same findings again) or when the rounds run out, and the
session then waits for the operator's `approve`.
"""

from __future__ import annotations

import hashlib
import re

from daemon.tools import TOOL_SPECS
from protocol import wire

#: The reviewer's whole answer when it finds nothing to refute.
NO_FINDINGS = "NO FINDINGS"
#: Who the findings are from, as the root agent sees them.
REVIEWER_AUTHOR = "reviewer"
#: A reviewer looks, it does not touch: no writes, no commands, no subagents.
REVIEW_TOOL_NAMES = ("read_file", "list_files", "search")
#: The most of the findings a note carries, in UTF-8 bytes: with its preamble it stays
#: under a nudge's limit (`protocol.wire.MAX_NUDGE_BYTES`).
FINDINGS_NOTE_BYTES = 12_000

REVIEWER_PROMPT = """\
You are a reviewer run by steer, looking at work done in the directory {workdir}. \
Every path you pass to a tool is relative to that directory. You can read, list and \
search files; you cannot change anything, and you must not try to.

Another agent was given a task and says it is finished. Your job is to refute that \
claim, not to fix the work: examine the change against the task, read the code it \
touched, and look for concrete defects: requirements of the task that are not met, \
bugs, broken edge cases, missing or wrong tests, changes the task did not ask for.

Answer with a numbered list of findings. Each names the file (and line, where it \
helps), what is wrong, and why it matters. Report only defects you can point to, not \
style preferences or guesses. If you find nothing, answer exactly: {no_findings}
"""


def reviewer_system(workdir: str) -> str:
    return REVIEWER_PROMPT.format(workdir=workdir, no_findings=NO_FINDINGS)


def reviewer_tools() -> list[dict[str, object]]:
    """The read-only part of the tool set, in the tool set's own order."""
    return [spec for spec in TOOL_SPECS if spec["name"] in REVIEW_TOOL_NAMES]


def review_task(task: str, workspace: str, round_no: int, rounds: int) -> str:
    """The reviewer's first message. It opens with the round (the simulator's scripted
    reviewers, tests/scenarios/review-N.json, are chosen by that opening)."""
    state = workspace or "(no checks ran, so no record of the workspace)"
    return (
        f"Review round {round_no} of {rounds}.\n\n"
        f"The task the agent was given:\n<task>\n{task}\n</task>\n\n"
        f"The workspace as its acceptance checks last saw it:\n{state}\n\n"
        "Examine the work against the task and list its defects as findings, or answer "
        f"exactly {NO_FINDINGS}."
    )


def review_key(serial: int) -> str:
    """The reviewer's `parent_call`: how the root agent finds it again after a restart."""
    return f"review-{serial}"


def reviewer_name(round_no: int) -> str:
    return f"reviewer-{round_no}"


def normalized(findings: str) -> str:
    """The findings with white space runs as one space: how they are compared."""
    return re.sub(r"\s+", " ", findings).strip()


def found_nothing(findings: str) -> bool:
    """Whether the reviewer's answer says it found nothing (or says nothing at all)."""
    text = normalized(findings).rstrip(".").upper()
    return text in ("", NO_FINDINGS)


def findings_digest(findings: str) -> str:
    return hashlib.sha256(normalized(findings).encode()).hexdigest()


def findings_note(findings: str, round_no: int, rounds: int) -> str:
    """What the root agent is told: the findings, and what to do with them."""
    text = findings.strip()
    if len(text.encode()) > FINDINGS_NOTE_BYTES:
        text = wire.first_bytes(text, FINDINGS_NOTE_BYTES) + "\n[... findings cut]"
    return (
        f"A reviewer examined your work (review round {round_no} of {rounds}) and found "
        "these defects. Fix the real ones; if a finding is wrong, say why in one line. "
        f"Then end your turn: the checks and a new review follow.\n\n{text}"
    )
