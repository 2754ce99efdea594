"""The `nudge` command: send a correction to a running steer session through Redis.

It appends one entry to the nudge stream, so it works while the daemon is down; the
entry, its limits and its checks are `protocol.wire`'s, as for `Nudge.to_fields()`.
Before it writes, it asks Redis what it already knows: a session or agent that does
not exist, or an agent that takes no more nudges (`protocol.wire.closed_reason`), is
refused at once rather than accepted and rejected later. With --wait it follows the
session's event stream until the daemon reports the nudge delivered or rejected, or
the agent failed.

It must start in a few tens of milliseconds, so it imports no redis-py, pydantic,
asyncio or protocol models (100+ ms between them): only cheap stdlib modules,
`daemon.keys`, `daemon.paths`, the raw-socket client `daemon.resp` and the import-free
`protocol.wire`.

Exit codes are `steer`'s (README, "Exit codes"): 0 sent (with --wait: delivered);
1 refused (unknown session or agent, bad text or author, an agent that takes no more
nudges); 2 bad usage or configuration, or Redis unreachable or refusing; 3 --wait timed
out (the nudge stays queued); 4 the daemon rejected the nudge after it was sent; 5 the
agent failed before answering it; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import time

from daemon import resp
from daemon.keys import Keys
from daemon.paths import configured_redis_url, key_prefix
from protocol import wire

#: `daemon.agent_state.ROOT`, which this command may not import (pydantic).
ROOT = "root"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_REJECTED = 4
EXIT_FAILED = 5
EXIT_INTERRUPTED = 130

DEFAULT_TIMEOUT_S = 120.0
REDIS_TIMEOUT_S = 5.0
AMBIGUOUS_SHOWN = 5
#: A Redis Cluster redirects a command at most a couple of times (MOVED, then ASK).
MAX_REDIRECTS = 5
#: What Redis knows of an agent, in one round trip and without `json` on this side (its
#: import, with `re`, would cost this command a tenth of its start-up): whether the
#: session has any agent recorded, whether this one is, whether it has a parent, and
#: its status ("" when it has no state yet), or that the session is imported or archived
#: (nobody reads its stream). All keys share the session's hash slot.
AGENT_SCRIPT = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 'imported' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'archived' end
local config = redis.call('HGET', KEYS[1], ARGV[1])
if not config then return {redis.call('EXISTS', KEYS[1]), 0, 0, ''} end
local parent = cjson.decode(config).parent
local state = redis.call('GET', KEYS[2])
local status = state and cjson.decode(state).status or ''
return {1, 1, type(parent) == 'string' and 1 or 0, type(status) == 'string' and status or ''}
"""

HELP = f"""\
usage: nudge SESSION[/AGENT] TEXT [--redirect | --queue] [--all] [--wait]
             [--timeout SECONDS] [--author NAME]
             [--rule regex:PATTERN | --rule-cmd CMD] [--rule-veto]

Send a correction to a running steer session. It is applied at the agent's next
boundary as an operator instruction, and it is kept until then, even while the daemon
is down. Prints the nudge id.

  SESSION[/AGENT]    a session id, a session name or a unique id prefix; /AGENT
                     addresses one of its agents (default: the root agent)
  TEXT               the correction; "-" reads it from stdin (put -- before a text
                     that starts with "-")
  --redirect         interrupt the agent now (its model call or tool), then deliver
  --queue            deliver only when the agent ends its turn (a follow-up)
  --all              a standing nudge: every agent of the session gets it, including
                     subagents started later (not with /AGENT)
  --wait             wait until the model has answered it, and say how it landed
                     (with --all: the first agent that answered)
  --timeout SECONDS  how long --wait waits (default {DEFAULT_TIMEOUT_S:g})
  --author NAME      who sends it (default: $USER)
  --rule regex:PATTERN
                     a standing rule (implies --all): every file an agent writes
                     is checked, and a line matching PATTERN (RE2 syntax) sends
                     the rule back to it with the offending lines
  --rule-cmd CMD     a standing rule checked by a shell command: CMD FILE runs for
                     every file an agent writes; a non-zero exit breaks the rule
  --rule-veto        refuse a write_file/edit_file that would break the rule

Redis: $STEER_REDIS_URL, else the embedded one `steer daemon` started
($STEER_HOME/redis.url); key prefix $STEER_KEY_PREFIX (default "steer").

Exit codes (the same as steer's): 0 sent (with --wait: delivered); 1 refused: unknown
session or agent, bad text or author, or an agent that takes no more nudges (vetoed,
or a subagent that reported back); 2 bad usage or configuration, or Redis unreachable;
3 --wait timed out (the nudge stays queued and will still be applied); 4 rejected by
the daemon after it was sent; 5 the agent failed before answering (`steer resume`
retries it)."""


class Fail(Exception):
    """A one-line error for the user, with the exit code it maps to."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class Args:
    """The parsed command line."""

    def __init__(self) -> None:
        self.target = ""
        self.text = ""
        self.mode = wire.DEFAULT_MODE
        self.standing = False
        self.wait = False
        self.timeout: str | None = None
        self.author: str | None = None
        self.rule_regex: str | None = None
        self.rule_cmd: str | None = None
        self.rule_veto = False
        self.help = False
        self.version = False


def parse_args(argv: list[str]) -> Args:
    """Parse the command line by hand: building an argparse parser costs ~5 ms."""
    args = Args()
    positional: list[str] = []
    rest = iter(argv)
    for arg in rest:
        if arg == "--":
            positional.extend(rest)
        elif arg == "-" or not arg.startswith("-"):
            positional.append(arg)
        elif arg in ("-h", "--help"):
            args.help = True
            return args
        elif arg == "--version":
            args.version = True
            return args
        elif arg in ("--queue", "--redirect"):
            mode = arg[2:]
            if args.mode not in (wire.DEFAULT_MODE, mode):
                raise Fail("--redirect and --queue exclude each other (see nudge --help)")
            args.mode = mode
        elif arg == "--all":
            args.standing = True
        elif arg == "--wait":
            args.wait = True
        elif arg == "--rule-veto":
            args.rule_veto = True
        elif (name := arg.partition("=")[0]) in ("--timeout", "--author", "--rule", "--rule-cmd"):
            value = arg[len(name) + 1 :] if "=" in arg else next(rest, None)
            if value is None:
                raise Fail(f"{name} needs a value (see nudge --help)")
            if name == "--timeout":
                args.timeout = value
            elif name == "--author":
                args.author = value
            elif name == "--rule-cmd":
                args.rule_cmd = value
            elif value.startswith("regex:"):
                args.rule_regex = value.removeprefix("regex:")
            else:
                raise Fail(f"--rule takes regex:PATTERN, not {value[:40]!r} (see nudge --help)")
        else:
            raise Fail(f"unknown option {arg!r} (put -- before a text that starts with -)")
    if len(positional) != 2:
        raise Fail(
            f"expected SESSION[/AGENT] and TEXT, got {len(positional)} arguments (see nudge --help)"
        )
    args.target, args.text = positional
    if args.standing and "/" in args.target:
        raise Fail("--all addresses every agent of a session: give SESSION, not SESSION/AGENT")
    if args.rule_regex is not None or args.rule_cmd is not None:
        if "/" in args.target:
            raise Fail("a rule holds for every agent of a session: give SESSION, not SESSION/AGENT")
        args.standing = True
    problem = wire.rule_problem(args.rule_regex, args.rule_cmd, args.rule_veto, args.standing)
    if problem:
        raise Fail(problem, EXIT_REFUSED)
    return args


def main(argv: list[str] | None = None) -> int:
    nudge_id, sent = "", False
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.help:
            print(HELP)
            return EXIT_OK
        if args.version:
            from importlib.metadata import version  # only when asked: it costs milliseconds

            print(f"nudge {version('steer')}")
            return EXIT_OK
        text = _text(args.text)
        author = _author(args.author)
        timeout = _timeout(args.timeout, args.wait)
        session_query, _, agent = args.target.partition("/")
        url = configured_redis_url()
        if not url:
            raise Fail(
                "no Redis configured: set STEER_REDIS_URL, or run `steer daemon` once "
                "to start the embedded Redis"
            )
        keys = Keys(key_prefix())
        with _Redis(url) as redis:
            sid = _resolve(redis, keys, session_query)
            _check_agent(redis, keys, sid, agent if not args.standing else "")
            # With --wait, read positions are taken before the XADD, so that no report
            # about the nudge can be missed.
            watched = (keys.events(sid),) if args.wait else ()
            since = {key: _last_id(redis, key) for key in watched}
            nudge_id = "n-" + os.urandom(8).hex()
            fields = wire.nudge_fields(
                nudge_id=nudge_id,
                session=sid,
                agent=agent,
                mode=args.mode,
                text=text,
                author=author,
                sent_at=time.time(),
                standing=args.standing,
                rule_regex=args.rule_regex,
                rule_cmd=args.rule_cmd,
                rule_veto=args.rule_veto,
            )
            try:  # the daemon's own check: never write an entry it would refuse
                wire.decode_nudge_fields(fields)
            except wire.InvalidEntry as exc:
                raise Fail(exc.reason) from None
            redis.xadd(keys.nudges(sid), fields)
            sent = True
            # Wakes the session's owner at once (without it, its sweep finds the nudge
            # within seconds): after the XADD, so the owner reads an entry that exists.
            redis.call("PUBLISH", keys.doorbell, sid)
            if not args.wait:
                print(nudge_id)
                return EXIT_OK
            where = None if args.standing else _where(sid, agent)
            return _wait(redis, since, nudge_id, sid, where, timeout)
    except Fail as exc:
        print(f"nudge: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        if sent:
            print(f"nudge: interrupted; {nudge_id} was sent and stays queued", file=sys.stderr)
        elif nudge_id:
            print(f"nudge: interrupted; {nudge_id} may have been sent", file=sys.stderr)
        else:
            print("nudge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`nudge --help | head`): nothing more to say, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK if sent or not nudge_id else EXIT_INTERRUPTED


def _text(arg: str) -> str:
    if arg == "-":
        try:
            text = sys.stdin.buffer.read().decode().rstrip("\n")
        except UnicodeDecodeError:
            raise Fail("the text on stdin is not valid UTF-8") from None
    else:
        text = arg  # undecodable bytes in argv arrive as surrogates: wire refuses them
    problem = wire.text_problem(text)
    if problem:
        raise Fail(problem, EXIT_REFUSED)
    return text


def _author(arg: str | None) -> str:
    author = arg if arg is not None else os.environ.get("USER") or wire.DEFAULT_AUTHOR
    problem = wire.author_problem(author)
    if problem:
        raise Fail(problem, EXIT_REFUSED)
    return author


def _timeout(arg: str | None, wait: bool) -> float:
    if arg is None:
        return DEFAULT_TIMEOUT_S
    if not wait:
        raise Fail("--timeout only applies with --wait")
    try:
        seconds = float(arg)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e9:
        raise Fail(f"--timeout must be a positive number of seconds, not {arg!r}")
    return seconds


def _resolve(redis: _Redis, keys: Keys, query: str) -> str:
    """The session id that QUERY names, as `resolve_session` finds it, but an exact id
    or name by a lookup or two (as the daemon's `Store.named`), not a read of the whole
    index, whose parsing grows with the sessions (several ms for 1,000). The index is
    read for a prefix, or when this Redis user may not look up names (an ACL without
    HEXISTS or HGET)."""
    if not query:
        raise Fail("no session given")
    try:
        if redis.call("HEXISTS", keys.sessions, query) == 1:
            return query
        holder = redis.call("HGET", keys.names, query)
        # A name is reserved before its session is listed (and kept if that failed).
        if isinstance(holder, str) and redis.call("HEXISTS", keys.sessions, holder) == 1:
            return holder
    except Fail as exc:
        if not isinstance(exc.__context__, resp.RespError):  # NOPERM: read the index
            raise
    return resolve_session(query, _hash(redis.call("HGETALL", keys.sessions)))


def resolve_session(query: str, sessions: dict[str, str]) -> str:
    """The session id that QUERY names: an exact id, an exact name or a unique id prefix."""
    if not query:
        raise Fail("no session given")
    if query in sessions:
        return query
    matches = sorted(sid for sid, name in sessions.items() if name == query)
    if not matches:
        matches = sorted(sid for sid in sessions if sid.startswith(query))
    if not matches:
        raise Fail(f"unknown session {query!r}", EXIT_REFUSED)
    if len(matches) > 1:
        shown = ", ".join(f"{sid} ({sessions[sid]})" for sid in matches[:AMBIGUOUS_SHOWN])
        more = (
            f" and {len(matches) - AMBIGUOUS_SHOWN} more" if len(matches) > AMBIGUOUS_SHOWN else ""
        )
        raise Fail(f"ambiguous session {query!r}: {shown}{more}", EXIT_REFUSED)
    return matches[0]


def _check_agent(redis: _Redis, keys: Keys, sid: str, agent: str) -> None:
    """Refuse now what the daemon would refuse once it reads the nudge.

    Redis may not know: a session listed before its agents were written, or a sender
    whose ACL user may not read agents (the least-privilege `nudger`); then the
    daemon decides, and --wait reports its answer."""
    aid = agent or ROOT
    try:
        reply = redis.call(
            "EVAL",
            AGENT_SCRIPT,
            4,
            keys.agents(sid),
            keys.state(sid, aid),
            keys.archived(sid),
            keys.imported(sid),
            aid,
        )
    except Fail as exc:
        if isinstance(exc.__context__, resp.RespError):  # NOPERM, or a value not JSON
            return
        raise
    if reply == "imported":  # the daemon's own sentences (`daemon.life_store`)
        raise Fail(f"{sid}: imported sessions are read-only", EXIT_REFUSED)
    if reply == "archived":
        raise Fail(
            f"session {sid} is archived; `steer archive --undo {sid}` brings it back",
            EXIT_REFUSED,
        )
    if not isinstance(reply, list) or len(reply) != 4:
        return
    any_agent, known, subagent, status = reply
    if any_agent == 1 and known == 0:
        shown = aid if aid.isprintable() else repr(aid)  # never a raw control character
        raise Fail(f"unknown agent {sid}/{shown}", EXIT_REFUSED)
    closed = wire.closed_reason(str(status), subagent == 1)
    if closed is not None:
        raise Fail(f"{sid}/{aid}: {closed}", EXIT_REFUSED)  # the daemon's own sentence


def _where(sid: str, agent: str) -> str:
    return f"{sid}/{agent}" if agent and agent != ROOT else f"{sid} (root)"


class _Redis:
    """The command's Redis connection; failures become one-line `Fail`s."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = self._connect(url)
        #: Connections to the other nodes of a Redis Cluster, by "host:port".
        self._nodes: dict[str, resp.Connection] = {}

    def __enter__(self) -> _Redis:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for conn in (self._conn, *self._nodes.values()):
            conn.close()

    def call(self, *args: str | int, timeout: float = REDIS_TIMEOUT_S) -> resp.Reply:
        """Run a command, following a Redis Cluster's MOVED and ASK redirections."""
        conn, asking = self._conn, False
        for _ in range(MAX_REDIRECTS):
            try:
                conn.settimeout(timeout)
                if asking:
                    conn.execute("ASKING")
                return conn.execute(*args)
            except resp.RespError as exc:
                kind, _, rest = str(exc).partition(" ")
                if kind not in ("MOVED", "ASK"):
                    raise Fail(f"Redis refused {args[0]}: {exc}") from None
                conn, asking = self._node(rest.rpartition(" ")[2]), kind == "ASK"
                if kind == "MOVED" and conn is not self._conn:
                    self._conn = conn  # later commands go to the slot's node first
            except OSError as exc:
                raise self._unreachable(exc) from None
        raise Fail(f"Redis kept redirecting {args[0]}: is the cluster resharding?")

    def xadd(self, key: str, fields: dict[str, str]) -> None:
        args = ("XADD", key, "*", *(item for pair in fields.items() for item in pair))
        try:
            self.call(*args)
        except Fail as exc:
            if not isinstance(exc.__context__, OSError):
                raise
            # The XADD may have been applied before the connection broke. Sending it
            # again is safe: the daemon applies each nudge_id once.
            try:
                self._conn.close()
                self._conn = self._connect(self.url)
                self.call(*args)
            except Fail as again:
                raise Fail(f"{again}; {fields['nudge_id']} may have been sent") from None

    def _node(self, address: str) -> resp.Connection:
        """A connection to another cluster node, with this URL's credentials."""
        if address not in self._nodes:
            self._nodes[address] = self._connect(resp.with_address(self.url, address))
        return self._nodes[address]

    def _connect(self, url: str) -> resp.Connection:
        try:
            return resp.connect(url, timeout=REDIS_TIMEOUT_S)
        except (OSError, ValueError, resp.RespError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> Fail:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        reason = reason or type(exc).__name__
        return Fail(f"cannot reach Redis at {resp.mask_url(self.url)}: {reason}")


def _hash(reply: resp.Reply) -> dict[str, str]:
    """A flat [field, value, ...] array reply as a dict."""
    flat = [str(item) for item in reply] if isinstance(reply, list) else []
    return dict(zip(flat[::2], flat[1::2], strict=False))


def _last_id(redis: _Redis, key: str) -> str:
    reply = redis.call("XREVRANGE", key, "+", "-", "COUNT", 1)
    if isinstance(reply, list) and reply and isinstance(reply[0], list):
        entry_id = reply[0][0]
        if isinstance(entry_id, str):
            return entry_id
    return "0-0"


def _wait(
    redis: _Redis,
    since: dict[str, str],
    nudge_id: str,
    sid: str,
    where: str | None,
    timeout: float,
) -> int:
    """Follow the event streams until the nudge is delivered or rejected, the agent it
    was applied to fails, or time runs out.

    `where` None (a standing nudge): the first agent the daemon reports, whichever."""
    deadline = time.monotonic() + timeout
    applied = False
    #: The agent the nudge was applied to: if it fails, the model will not answer.
    applied_to: str | None = None
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            # XREAD BLOCK returns nil at its own deadline; the socket timeout is a backstop.
            reply = redis.call(
                "XREAD",
                "COUNT",
                100,
                "BLOCK",
                max(1, int(remaining * 1000)),
                "STREAMS",
                *since.keys(),
                *since.values(),
                timeout=remaining + REDIS_TIMEOUT_S,
            )
            for key, entry_id, event in _entries(reply):
                since[key] = entry_id
                if (
                    applied_to is not None
                    and event.get("type") == "agent.status"
                    and event.get("status") == "failed"
                    and event.get("agent") == applied_to
                ):
                    resume = sid if applied_to == ROOT else f"{sid}/{applied_to}"
                    raise Fail(
                        f"the agent failed: {event.get('reason')}; `steer resume {resume}` "
                        f"retries it ({nudge_id} is in its conversation)",
                        EXIT_FAILED,
                    )
                if event.get("nudge_id") != nudge_id:
                    continue
                kind = event.get("type")
                agent = where or _where(sid, str(event.get("agent") or ""))
                if kind == "nudge.applied" and not applied:
                    applied, applied_to = True, str(event.get("agent") or ROOT)
                    print(
                        f"applied to {agent} in request {event.get('request_no')} via "
                        f"{event.get('path')}; waiting for the model...",
                        file=sys.stderr,
                    )
                elif kind == "nudge.delivered":
                    print(_delivered(agent, event))
                    return EXIT_OK
                elif kind == "nudge.rejected":
                    raise Fail(f"{nudge_id} rejected: {event.get('reason')}", EXIT_REJECTED)
    except Fail as exc:
        if exc.code == EXIT_USAGE:  # Redis went away after the XADD
            raise Fail(f"{exc}; {nudge_id} was sent and stays queued", exc.code) from None
        raise
    if applied:
        raise Fail(
            f"{nudge_id} was applied but the model has not answered within {timeout:g}s",
            EXIT_TIMEOUT,
        )
    raise Fail(
        f"{nudge_id} not applied within {timeout:g}s; it stays queued and will still be applied",
        EXIT_TIMEOUT,
    )


def _entries(reply: resp.Reply) -> list[tuple[str, str, dict[str, object]]]:
    """(stream key, entry id, event) for each entry of an XREAD reply, in order.

    An entry that is not a frame still moves the read position on: it comes back with
    an empty event.
    """
    import json  # only --wait needs it

    out: list[tuple[str, str, dict[str, object]]] = []
    for key, entries in _pairs(reply):
        for entry_id, flat in _pairs(entries):
            try:
                frame = json.loads(_hash(flat).get("frame", ""))
            except ValueError:
                frame = None
            event = frame.get("event") if isinstance(frame, dict) else None
            out.append((str(key), str(entry_id), event if isinstance(event, dict) else {}))
    return out


def _pairs(reply: resp.Reply) -> list[tuple[resp.Reply, resp.Reply]]:
    """The two-element arrays in an array reply: (stream, entries) or (id, fields)."""
    items = reply if isinstance(reply, list) else []
    return [(item[0], item[1]) for item in items if isinstance(item, list) and len(item) == 2]


def _delivered(where: str, event: dict[str, object]) -> str:
    cache = event.get("cache")
    cache = cache if isinstance(cache, dict) else {}
    share = cache.get("prior_cached_share")
    if isinstance(share, int | float):
        read = f"{share:.1%} of the prior prompt read from cache"
    else:
        read = "no prior request to compare"
    miss = cache.get("cache_miss_reason")
    miss_note = f" (cache miss: {miss})" if miss else ""
    return (
        f"delivered to {where} in request {event.get('request_no')} via "
        f"{event.get('path')}; {read}{miss_note}"
    )


if __name__ == "__main__":
    sys.exit(main())
