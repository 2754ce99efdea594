"""The statuses and limits of `protocol` that the `steer` command shows, without
pydantic: `protocol.sessions` and `protocol.checks` define them next to their models,
whose import would cost the CLI about 190 ms. tests/daemon/test_cli_vocabulary.py
holds each copy equal to its original.
"""

from __future__ import annotations

#: `protocol.sessions.ATTENTION_ORDER`: listings sort by it.
ATTENTION_ORDER = (
    "needs_human",
    "waiting",
    "failed",
    "awaiting_approval",
    "budget_reached",
    "paused",
    "running",
    "checking",
    "reviewing",
    "queued",
    "idle",
    "done",
    "vetoed",
)
#: `protocol.sessions.NEEDS_OPERATOR`: marked `!`.
NEEDS_OPERATOR = frozenset({"needs_human", "waiting", "failed", "budget_reached"})
#: `protocol.sessions.SETTLED`: statuses an agent never leaves by itself.
SETTLED = frozenset({"done", "failed", "vetoed"})
#: `protocol.sessions.APPROVAL_POLICIES`.
APPROVAL_POLICIES = ("none", "writes", "shell", "all")
MAX_PARALLEL_SUBAGENTS = 32
DEFAULT_PARALLEL_SUBAGENTS = 4

#: `protocol.checks`' limits and defaults.
MAX_CHECKS = 8
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_CHECK_TIMEOUT_S = 600
#: `protocol.events.AgentStatusChanged.type`.
AGENT_STATUS_EVENT = "agent.status"
