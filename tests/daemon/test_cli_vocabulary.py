"""`daemon.cli_vocabulary` copies statuses and limits out of `protocol` so that the CLI
starts without pydantic: each copy is the original."""

from __future__ import annotations

from typing import get_args

from daemon import cli_vocabulary as copied
from protocol import checks, events, sessions


def test_statuses_and_limits_are_the_protocols() -> None:
    assert copied.ATTENTION_ORDER == sessions.ATTENTION_ORDER
    assert set(copied.ATTENTION_ORDER) == set(get_args(sessions.AgentStatus))
    assert copied.NEEDS_OPERATOR == sessions.NEEDS_OPERATOR
    assert copied.SETTLED == sessions.SETTLED
    assert copied.APPROVAL_POLICIES == sessions.APPROVAL_POLICIES
    assert copied.MAX_PARALLEL_SUBAGENTS == sessions.MAX_PARALLEL_SUBAGENTS
    assert copied.DEFAULT_PARALLEL_SUBAGENTS == sessions.DEFAULT_PARALLEL_SUBAGENTS
    assert copied.MAX_CHECKS == checks.MAX_CHECKS
    assert copied.DEFAULT_MAX_ATTEMPTS == checks.DEFAULT_MAX_ATTEMPTS
    assert copied.DEFAULT_CHECK_TIMEOUT_S == checks.DEFAULT_CHECK_TIMEOUT_S
    assert events.AgentStatusChanged.model_fields["type"].default == copied.AGENT_STATUS_EVENT
