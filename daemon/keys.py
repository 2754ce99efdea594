"""Every Redis key name steer uses, in one place.

All keys of one session share the hash tag `{<sid>}` so a single MULTI covers them.
The nudge stream is global: one blocking read serves every session, and a nudge
for an unknown session can still be received and reported.

This module is imported by the `nudge` command, so it must stay import-free.
"""

NUDGE_GROUP = "daemon"


class Keys:
    def __init__(self, prefix: str = "steer") -> None:
        self.prefix = prefix

    @property
    def nudges(self) -> str:
        """Stream of nudges from every sender; consumed by the group NUDGE_GROUP."""
        return f"{self.prefix}:nudges"

    @property
    def rejected(self) -> str:
        """Stream of Frames reporting nudges for sessions that do not exist."""
        return f"{self.prefix}:rejected"

    @property
    def sessions(self) -> str:
        """Hash: session id -> session name."""
        return f"{self.prefix}:sessions"

    def spec(self, sid: str) -> str:
        """String: the SessionSpec as JSON."""
        return f"{self.prefix}:{{{sid}}}:spec"

    def events(self, sid: str) -> str:
        """Stream of Frames; entry id `<seq>-0`, one field `frame`."""
        return f"{self.prefix}:{{{sid}}}:events"

    def standing(self, sid: str) -> str:
        """List: the session's standing nudges (`--all`) as JSON, for agents yet to come."""
        return f"{self.prefix}:{{{sid}}}:standing"

    def agents(self, sid: str) -> str:
        """Hash: agent id -> AgentConfig as JSON (fixed for the agent's life)."""
        return f"{self.prefix}:{{{sid}}}:agents"

    def messages(self, sid: str, aid: str) -> str:
        """List: the agent's conversation, one JSON message per entry, append-only."""
        return f"{self.prefix}:{{{sid}}}:agent:{aid}:messages"

    def state(self, sid: str, aid: str) -> str:
        """String: the agent's state (status, counters, nudges) as JSON."""
        return f"{self.prefix}:{{{sid}}}:agent:{aid}:state"
