"""Which tool calls wait for the operator's approval under a session's policy.

The levels are cumulative, from least to most supervised: `writes` holds the tools
that change files, `shell` holds those and shell commands (a shell can write too),
`all` holds every call, reads and subagents included.
"""

from __future__ import annotations

from protocol.sessions import ApprovalPolicy

WRITE_TOOLS = frozenset({"write_file", "edit_file"})
SHELL_TOOLS = frozenset({"run_command"})


def needs_approval(policy: ApprovalPolicy, tool: str) -> bool:
    match policy:
        case "none":
            return False
        case "writes":
            return tool in WRITE_TOOLS
        case "shell":
            return tool in WRITE_TOOLS or tool in SHELL_TOOLS
        case "all":
            return True
