"""Every verb of the dashboard, once: its key, its action, and what it does.

The app's key bindings, the footer, the help screen and the command palette are all
built from `VERBS`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True, slots=True)
class Verb:
    #: The app action (`action_<name>`).
    action: str
    #: Textual key names, comma separated.
    keys: str
    #: What the footer shows.
    label: str
    #: The command palette entry and the help screen's line.
    title: str
    help: str
    key_display: str | None = None
    footer: bool = True


VERBS: tuple[Verb, ...] = (
    Verb(
        "nudge",
        "n",
        "Nudge",
        "Nudge the selected agent",
        "Type a correction: Enter delivers it at the agent's next boundary (steer), "
        "Ctrl+J queues it until the agent ends its turn.",
    ),
    Verb(
        "redirect",
        "r",
        "Redirect",
        "Redirect the selected agent",
        "Interrupt its model call or tool now and give it a correction.",
    ),
    Verb(
        "pause",
        "p",
        "Pause",
        "Pause at the next boundary",
        "Hold the agent at its next boundary (on a session's row: every agent).",
    ),
    Verb(
        "pause_now",
        "P",
        "Pause now",
        "Pause now",
        "Cancel the in-flight model call (its half turn is dropped), then hold.",
        key_display="P",
        footer=False,
    ),
    Verb(
        "resume",
        "u",
        "Resume",
        "Resume",
        "Continue a paused agent or retry a failed one (on a session's row: every agent).",
    ),
    Verb(
        "veto",
        "v",
        "Veto",
        "Veto the selected agent",
        "Stop it and its subagents for good, with a reason its parent is told "
        "(on a session's row: the whole session). Asks for confirmation.",
    ),
    Verb(
        "approve",
        "a",
        "Approve",
        "Approve the pending tool call, or the reviewed work",
        "Let the selected agent's first tool call that waits for approval run; on a "
        "session awaiting approval (checks passed, review over), accept its work: it "
        "ends as done.",
    ),
    Verb(
        "deny",
        "d",
        "Deny",
        "Deny the pending tool call",
        "Refuse the selected agent's first tool call that waits for approval, "
        "with an optional reason the model is told.",
    ),
    Verb(
        "help",
        "question_mark,f1",
        "Help",
        "Show the keys",
        "This screen.",
        key_display="?",
    ),
    Verb(
        "attention",
        "exclamation_mark",
        "Attention",
        "Jump to the next agent that needs you",
        "Select the next agent that needs the operator: one that needs a human (its "
        "checks failed for good) first, then one waiting for an approval, then a failed one.",
        key_display="!",
    ),
    Verb(
        "follow",
        "f",
        "Follow",
        "Toggle follow mode",
        "Keep selecting the agent that most recently did something.",
    ),
    Verb(
        "filter",
        "slash",
        "Filter",
        "Filter sessions",
        "Show only sessions whose id, name, task, model or state (or an agent's) "
        "contain every word typed.",
        key_display="/",
    ),
    Verb(
        "sort",
        "s",
        "Sort",
        "Change the sort order",
        "Cycle the session order: attention, newest, name, state, cost, tokens "
        "(S reverses it; a click on a column header sorts by it).",
        footer=False,
    ),
    Verb("reverse", "S", "Reverse", "Reverse the sort order", "", footer=False),
    Verb(
        "fold",
        "space",
        "Fold",
        "Fold or unfold the session's agents",
        "Hide or show a session's subagents.",
        footer=False,
    ),
    Verb(
        "tools",
        "e",
        "Tools",
        "Expand or collapse the tool calls",
        "Open every tool call of the transcript, or close them all.",
        footer=False,
    ),
    Verb("quit", "q", "Quit", "Quit", "Leave the dashboard (the sessions go on).", footer=False),
)


def bindings() -> list[BindingType]:
    return [
        Binding(v.keys, v.action, v.label, show=v.footer, key_display=v.key_display) for v in VERBS
    ]
