"""Every Redis key name (and Pub/Sub channel) steer uses, in one place.

All keys of one session share the hash tag `{<sid>}`, so one Lua script covers them
and Redis Cluster keeps them on one slot: a session's nudge stream, its owner lease
and everything a step writes. Only the session index, the registry of live daemons,
the relayed verbs' replies, the blobs agents share and the Pub/Sub channels are
global. None of them is on the nudge path as a single hot key: a nudge is appended to
its own session's stream, and the doorbell (Pub/Sub, broadcast to every node of a
cluster) only wakes the owner.

This module is imported by the `nudge` command, so it must stay import-free.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

#: The consumer group on every session's nudge stream, and its one consumer: only
#: the session's owner reads it (through a fenced script), so a new owner finds the
#: unacknowledged entries of the previous one under the same consumer name.
NUDGE_GROUP = "daemon"
NUDGE_CONSUMER = "owner"


class Keys:
    def __init__(self, prefix: str = "steer") -> None:
        self.prefix = prefix

    # -- global -----------------------------------------------------------------

    @property
    def sessions(self) -> str:
        """Hash: session id -> session name (the index every daemon lists)."""
        return f"{self.prefix}:sessions"

    @property
    def names(self) -> str:
        """Hash: session name -> session id, each set once (HSETNX): names are unique."""
        return f"{self.prefix}:names"

    @property
    def name_counts(self) -> str:
        """Hash: a default name's stem -> how many sessions it has named (the next one's
        number), so that a default name is found without reading every name."""
        return f"{self.prefix}:name-counts"

    @property
    def daemons(self) -> str:
        """Hash: daemon id -> its registration as JSON (address, pid, expiry)."""
        return f"{self.prefix}:daemons"

    @property
    def doorbell(self) -> str:
        """Pub/Sub channel: a session id, published after a nudge is appended for it."""
        return f"{self.prefix}:doorbell"

    @property
    def relay(self) -> str:
        """Pub/Sub channel: a session id, published after a verb is appended for it."""
        return f"{self.prefix}:relay"

    @property
    def committed(self) -> str:
        """Pub/Sub channel: `<sid> <first seq>`, published by every write that adds frames."""
        return f"{self.prefix}:committed"

    def blob(self, digest: str) -> str:
        """String: a value many agents share (a tool list, a system prompt) as compact
        JSON, under its SHA-256 (`daemon.config_store`). Written once, never changed,
        never deleted: configs of any session may name it."""
        return f"{self.prefix}:blob:{digest}"

    def reply(self, token: str) -> str:
        """List: the `Ack` to one relayed verb, for its caller (expires)."""
        return f"{self.prefix}:reply:{token}"

    # -- per session (one hash slot) ----------------------------------------------

    def control(self, sid: str) -> str:
        """Stream of verbs relayed to the session's owner: a Command and a reply key."""
        return f"{self.prefix}:{{{sid}}}:control"

    def nudges(self, sid: str) -> str:
        """Stream of the session's nudges; consumed by NUDGE_GROUP / NUDGE_CONSUMER."""
        return f"{self.prefix}:{{{sid}}}:nudges"

    def lease(self, sid: str) -> str:
        """String `<daemon id>:<epoch>` with a TTL: the session's owner, renewed while alive."""
        return f"{self.prefix}:{{{sid}}}:lease"

    def epoch(self, sid: str) -> str:
        """Integer, never expires: bumped on every claim, so a stale owner's token differs."""
        return f"{self.prefix}:{{{sid}}}:epoch"

    def spec(self, sid: str) -> str:
        """String: the SessionSpec as JSON."""
        return f"{self.prefix}:{{{sid}}}:spec"

    def events(self, sid: str) -> str:
        """Stream of Frames; entry id `<seq>-0`, fields `frame` and `owner` (the writer's
        lease token: epochs never go down along a session's stream)."""
        return f"{self.prefix}:{{{sid}}}:events"

    def standing(self, sid: str) -> str:
        """List: the session's standing nudges (`--all`) as JSON, for agents yet to come."""
        return f"{self.prefix}:{{{sid}}}:standing"

    def protected(self, sid: str) -> str:
        """Hash: path -> ProtectedFile JSON, the session's protected files as created
        (written once, with the spec): what the daemon restores them from."""
        return f"{self.prefix}:{{{sid}}}:protected"

    def budget(self, sid: str) -> str:
        """String: the session's Budget as JSON (set at creation, changed by `steer
        budget`); absent: no budget."""
        return f"{self.prefix}:{{{sid}}}:budget"

    def archived(self, sid: str) -> str:
        """String, JSON `{"at", "by"}`: the session is archived, so no daemon claims it
        (the claim script checks it); absent otherwise."""
        return f"{self.prefix}:{{{sid}}}:archived"

    def imported(self, sid: str) -> str:
        """String, JSON: where an imported session came from (`daemon.transfer`); such a
        session is read-only for good."""
        return f"{self.prefix}:{{{sid}}}:imported"

    def session_keys(self, sid: str, agents: "Iterable[str]") -> list[str]:
        """Every key of the session steer knows of, for the agent ids `agents`."""
        keys = [
            self.control(sid),
            self.nudges(sid),
            self.lease(sid),
            self.epoch(sid),
            self.spec(sid),
            self.events(sid),
            self.standing(sid),
            self.protected(sid),
            self.budget(sid),
            self.archived(sid),
            self.imported(sid),
            self.agents(sid),
        ]
        for aid in agents:
            keys += [
                self.messages(sid, aid),
                self.state(sid, aid),
                self.pending(sid, aid),
                self.seen(sid, aid),
            ]
        return keys

    def session_pattern(self, sid: str) -> str:
        """A SCAN MATCH pattern for every key of the session (those added later too)."""
        return f"{_glob_escape(self.prefix)}:{{{_glob_escape(sid)}}}:*"

    def agents(self, sid: str) -> str:
        """Hash: agent id -> AgentConfig as JSON (fixed for the agent's life)."""
        return f"{self.prefix}:{{{sid}}}:agents"

    def messages(self, sid: str, aid: str) -> str:
        """List: the agent's conversation, one JSON message per entry, append-only."""
        return f"{self.prefix}:{{{sid}}}:agent:{aid}:messages"

    def state(self, sid: str, aid: str) -> str:
        """String: the agent's small state (status, counters, in-flight nudges) as JSON."""
        return f"{self.prefix}:{{{sid}}}:agent:{aid}:state"

    def pending(self, sid: str, aid: str) -> str:
        """Hash: nudge id -> Nudge JSON, recorded for the agent and not yet delivered."""
        return f"{self.prefix}:{{{sid}}}:agent:{aid}:pending"

    def seen(self, sid: str, aid: str) -> str:
        """Set: every nudge id recorded for the agent, so a redelivery is a no-op."""
        return f"{self.prefix}:{{{sid}}}:agent:{aid}:seen"


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
