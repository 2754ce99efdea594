"""The `steer` command: run the daemon or the simulator, and talk to a running daemon.

Every client command exits 0 on success, 1 on a refusal (unknown session or agent,
bad input, a verb the agent's state does not allow), and 2 on bad usage or when the
daemon (or its Redis) cannot be reached: the `nudge` command's table, which adds its
--wait outcomes (README, "Exit codes").

`--json` prints JSON Lines: a list (`ls`, `logs`) one object per item, so it streams
and `-f` follows; a single thing (`show`) one object on one line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from daemon.client import EXIT_UNREACHABLE, NOT_RUNNING, ClientError, DaemonClient
from daemon.cost_report import cost_report, cost_table
from daemon.paths import DAEMON_FILE, TOKEN_FILE, steer_home
from daemon.render import (
    address,
    agent_header,
    check_evidence,
    conversation,
    frame_line,
    session_table,
    spent_of_budget,
    stale_line,
)
from protocol import wire
from protocol.checks import DEFAULT_CHECK_TIMEOUT_S, DEFAULT_MAX_ATTEMPTS, MAX_CHECKS
from protocol.envelope import Frame
from protocol.events import AgentStatusChanged, ChecksFinished, ChecksStarted, OperatorAction
from protocol.sessions import (
    APPROVAL_POLICIES,
    DEFAULT_PARALLEL_SUBAGENTS,
    MAX_PARALLEL_SUBAGENTS,
    SETTLED,
    SessionSummary,
)
from protocol.text import safe_json, visible

TARGET = "SESSION[/AGENT]"
TARGET_HELP = "a session (id, unique id prefix or name), or one of its agents as SESSION/AGENT"
#: How many of a failing check's last output lines `steer check` prints.
CHECK_TAIL_LINES = 40


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ClientError as exc:
        print(f"steer: {visible(str(exc))}", file=sys.stderr)  # it may quote the input
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`steer logs S | head`): it has all it wanted. Stdout is
        # pointed at /dev/null so that the interpreter's last flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steer",
        description="Keep Claude agent sessions alive in a daemon and steer them live. "
        'Send corrections with: nudge SESSION "TEXT".',
    )
    parser.add_argument("--version", action=_Version, help="print steer's version and exit")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = _command(sub, "daemon", help="run the daemon in the foreground")
    _sandbox_arg(p)
    p.set_defaults(func=_daemon)
    _lifecycle_commands(sub)

    p = _command(
        sub, "stop-redis", help="shut down the embedded Redis (it outlives the daemon on purpose)"
    )
    p.set_defaults(func=_stop_redis)

    p = _command(sub, "sim", help="run the Messages API simulator in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--scenarios", help="a directory of extra scenario JSON files")
    p.add_argument("--token-rate", type=float, default=40.0, help="tokens per second (0: no delay)")
    p.add_argument("--api-key", help="require this key from clients (default: accept any)")
    p.set_defaults(func=_sim)

    p = _command(sub, "run", help="start a session; prints its id")
    p.add_argument("task")
    p.add_argument("--workdir", default=".", help="the directory the agent works in (default: .)")
    p.add_argument("--model", help="the model (default: the daemon's STEER_MODEL)")
    p.add_argument("--name", help="a name to refer to the session by")
    p.add_argument(
        "--approve",
        choices=APPROVAL_POLICIES,
        default="none",
        help="which tool calls wait for `steer approve`: none, writes (file edits), shell "
        "(file edits and commands) or all (every call) (default: none)",
    )
    p.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="how many subagents may run at once; the others wait as queued "
        f"(default: {DEFAULT_PARALLEL_SUBAGENTS}, at most {MAX_PARALLEL_SUBAGENTS})",
    )
    _check_args(p)
    p.add_argument(
        "--budget-usd",
        type=float,
        metavar="USD",
        help="pause the session as budget_reached before the model call that would follow "
        "spending this much, over all its agents (default: the daemon's STEER_BUDGET_USD)",
    )
    p.add_argument(
        "--budget-tokens",
        type=int,
        metavar="N",
        help="the same for tokens: input, cache writes, cache reads and output "
        "(default: STEER_BUDGET_TOKENS)",
    )
    p.set_defaults(func=_run)

    p = _command(
        sub,
        "tui",
        help="the live dashboard: every session and agent, their conversations, and keys "
        "to nudge, redirect, pause, resume, veto, approve and deny",
    )
    p.add_argument("session", nargs="?", help="a session to select first (id, prefix or name)")
    _author_arg(p)
    p.set_defaults(func=_tui)

    p = _command(sub, "ls", help="list sessions, then the tool calls waiting for approval")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line, with each session's memory in Redis "
        "(memory_bytes: MEMORY USAGE summed over its keys, approximate)",
    )
    p.add_argument("--all", action="store_true", help="archived sessions too")
    p.set_defaults(func=_ls)

    p = _command(
        sub,
        "show",
        help="show an agent's state and conversation (nudges where they landed), its "
        "subagents and the tool calls waiting for approval",
    )
    p.add_argument("session", metavar=TARGET, help=TARGET_HELP + " (default: the root agent)")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"session": ..., "agent": ..., "messages": [...]}',
    )
    p.set_defaults(func=_show)

    p = _command(
        sub,
        "check",
        help="run a session's acceptance checks now (its agent must have ended its turn) "
        "and print the evidence (exit 1: they failed)",
    )
    p.add_argument("session", metavar="SESSION", help="a session (id, unique id prefix or name)")
    p.add_argument("--json", action="store_true", help="the check.finished event as one object")
    _author_arg(p)
    p.set_defaults(func=_check)

    p = _command(sub, "logs", help="print a session's events")
    p.add_argument("session")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--since", type=int, default=0, help="only events after this sequence number")
    p.add_argument("--json", action="store_true", help="one frame as JSON per line")
    p.set_defaults(func=_logs)

    p = _command(
        sub,
        "cost",
        help="what a session cost: by agent (subagents under their parents, cancelled "
        "requests included) and by nudge (tokens added, and what keeping the cache saved)",
    )
    p.add_argument("session", metavar="SESSION", help="a session (id, unique id prefix or name)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(func=_cost)

    p = _command(
        sub,
        "pause",
        help="hold an agent (no /AGENT: every agent of the session) at its next boundary",
    )
    _target_arg(p)
    p.add_argument(
        "--now",
        action="store_true",
        help="cancel an in-flight model call first (its half-streamed turn is dropped)",
    )
    _author_arg(p)
    p.set_defaults(func=_pause)

    p = _command(
        sub,
        "resume",
        help="continue a paused agent or retry a failed one (no /AGENT: every agent)",
    )
    _target_arg(p)
    _author_arg(p)
    p.set_defaults(func=_resume)

    p = _command(
        sub,
        "redirect",
        help="interrupt an agent now (model call or tool) and give it a correction; "
        "prints the nudge id",
    )
    _target_arg(p, "the agent (default: the root agent)")
    p.add_argument("text", metavar="TEXT", help='the correction; "-" reads it from stdin')
    _author_arg(p)
    p.set_defaults(func=_redirect)

    p = _command(
        sub,
        "veto",
        help="stop an agent and its subagents for good, telling its parent why "
        "(no /AGENT, or /root: the whole session)",
    )
    _target_arg(p)
    p.add_argument("--reason", help="why; the parent agent is told")
    _author_arg(p)
    p.set_defaults(func=_veto)

    p = _command(
        sub,
        "budget",
        help="set (say raise) a session's budget; agents held as budget_reached go on if "
        "it now allows. Prints what the session has spent of it",
    )
    p.add_argument("session", metavar="SESSION", help="a session (id, unique id prefix or name)")
    p.add_argument("--usd", type=float, metavar="USD", help="the limit in US dollars")
    p.add_argument("--tokens", type=int, metavar="N", help="the limit in tokens")
    _author_arg(p)
    p.set_defaults(func=_budget)

    p = _command(
        sub,
        "approve",
        help="let a tool call that waits for approval run (`steer ls` and `steer show` "
        "list them with their call ids); without CALL, accept the work of a session "
        "awaiting approval (its checks and review are over): it ends as done",
    )
    _target_arg(p, "the session, or SESSION/AGENT (call ids are unique, so /AGENT is optional)")
    p.add_argument(
        "call", metavar="CALL", nargs="?", help="the tool call id (none: the session's work)"
    )
    _author_arg(p)
    p.set_defaults(func=_approve)

    p = _command(
        sub,
        "deny",
        help="refuse a tool call that waits for approval; the model gets an error result",
    )
    _target_arg(p, "the session, or SESSION/AGENT (call ids are unique, so /AGENT is optional)")
    p.add_argument("call", metavar="CALL", help="the tool call id")
    p.add_argument("--reason", help="why; the model is told")
    _author_arg(p)
    p.set_defaults(func=_deny)
    _life_commands(sub)
    _completion_commands(sub)
    return parser


def _life_commands(sub: Any) -> None:
    """done, archive, rm, export and import: the end of a session's life, and its move."""
    session_help = "a session (id, unique id prefix or name)"
    p = _command(
        sub,
        "done",
        help="end a session on purpose, without a veto: its root agent and every agent "
        "still at work stop what they run and end as done",
    )
    p.add_argument("session", metavar="SESSION", help=session_help)
    _author_arg(p)
    p.set_defaults(func=_done)

    p = _command(
        sub,
        "archive",
        help="keep a session in Redis but out of `steer ls` (see --all) and the dashboard, "
        "its agents not driven; refused while it runs",
    )
    p.add_argument("session", metavar="SESSION", help=session_help)
    p.add_argument("--force", action="store_true", help="archive it even if it runs: end it first")
    p.add_argument("--undo", action="store_true", help="bring it back from the archive")
    p.add_argument(
        "--compact",
        action="store_true",
        help="also drop the events its conversations repeat (requests, tool calls and "
        "results), keeping nudges, evidence, replies and costs; works on an archived one",
    )
    _author_arg(p)
    p.set_defaults(func=_archive)

    p = _command(sub, "rm", help="delete a session and every key it has; refused while it runs")
    p.add_argument("session", metavar="SESSION", help=session_help)
    p.add_argument("--force", action="store_true", help="remove it even if it runs")
    _author_arg(p)
    p.set_defaults(func=_rm)

    p = _command(
        sub,
        "export",
        help="print a session's whole history as JSON Lines (conversations, events, nudges, "
        "checks, costs), for `steer import`",
    )
    p.add_argument("session", metavar="SESSION", help=session_help)
    p.set_defaults(func=_export)

    p = _command(
        sub,
        "import",
        help="load an export into this daemon as an archived, read-only session; prints its id",
    )
    p.add_argument("file", metavar="FILE", help='the export ("-": standard input)')
    p.set_defaults(func=_import)


def _check_args(parser: argparse.ArgumentParser) -> None:
    """`steer run`'s acceptance checks: what "done" has to prove."""
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="CMD",
        dest="checks",
        help="a shell command run in the workdir when the agent ends its turn; the "
        "session is done only when every check exits 0, and a failure goes back to "
        f"the agent (repeatable, at most {MAX_CHECKS})",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="check rounds before a failing session stops as needs_human; the same "
        f"failure twice stops it sooner (default: {DEFAULT_MAX_ATTEMPTS})",
    )
    parser.add_argument(
        "--check-timeout",
        type=int,
        metavar="SECONDS",
        help=f"how long each check may run before it is killed and fails "
        f"(default: {DEFAULT_CHECK_TIMEOUT_S})",
    )
    parser.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="GLOB",
        help="a path or glob (relative to the workdir, ** spans directories) no agent may "
        "change (repeatable; default: the files the checks name)",
    )
    parser.add_argument(
        "--review-rounds",
        type=int,
        metavar="N",
        help="review rounds after the checks pass, before the session is done "
        "(default: 0, no review)",
    )


def _sandbox_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sandbox-network",
        choices=("on", "off"),
        help="whether the agents' commands reach the network (default: STEER_SANDBOX_NETWORK, on)",
    )


class _Version(argparse.Action):
    """`--version`, read from the package metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from daemon.lifecycle import version

        print(f"steer {version()}")
        parser.exit()


def _lifecycle_commands(sub: Any) -> None:
    """start, stop, status and doctor (daemon.lifecycle, daemon.doctor)."""
    p = _command(
        sub,
        "start",
        help="start the daemon in the background (log: STEER_HOME/daemon.log); returns "
        "once it answers",
    )
    _sandbox_arg(p)
    p.set_defaults(func=_start)
    p = _command(sub, "stop", help="stop the background daemon and wait until it is gone")
    p.set_defaults(func=_stop)
    p = _command(
        sub,
        "status",
        help="the daemon's pid, address, uptime, Redis and sessions by state (exit 3: not running)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_status)
    p = _command(
        sub,
        "doctor",
        help="check Redis, the daemon, the token, the model and the cache, and say what "
        "to fix (exit 1: something to fix)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_doctor)


def _completion_commands(sub: Any) -> None:
    from daemon.completion import SESSIONS_COMMAND, SHELLS

    p = _command(sub, "completion", help="print a shell completion script (bash, zsh or fish)")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_completion, commands=list(sub.choices))  # every command so far
    # Hidden (no help): the session ids and names the completion scripts offer.
    sub.add_parser(SESSIONS_COMMAND).set_defaults(func=_sessions)


def _start(args: argparse.Namespace) -> int:
    from daemon.lifecycle import start

    extra = [] if args.sandbox_network is None else ["--sandbox-network", args.sandbox_network]
    return start(steer_home(), extra)


def _stop(args: argparse.Namespace) -> int:
    from daemon.lifecycle import stop

    return stop(steer_home())


def _status(args: argparse.Namespace) -> int:
    from daemon.lifecycle import status

    return status(steer_home(), as_json=args.json)


def _doctor(args: argparse.Namespace) -> int:
    from daemon.doctor import run

    return run(steer_home(), as_json=args.json)


def _completion(args: argparse.Namespace) -> int:
    from daemon.completion import script

    print(script(args.shell, args.commands), end="")
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from daemon.completion import session_words

    print("\n".join(session_words()))
    return 0


def _command(sub: Any, name: str, *, help: str) -> argparse.ArgumentParser:
    """A subcommand whose own --help opens with the line `steer --help` lists it by."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help[0].upper() + help[1:] + "."
    )
    return parser


def _target(value: str) -> tuple[str, str | None]:
    ref, _, agent = value.partition("/")
    if not ref:
        raise argparse.ArgumentTypeError(f"no session in {value!r} (expected {TARGET})")
    return ref, agent or None


def _target_arg(parser: argparse.ArgumentParser, help: str = TARGET_HELP) -> None:
    parser.add_argument("target", metavar=TARGET, type=_target, help=help)


def _author_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--author", help="who does it, for the audit trail (default: $USER)")


def _daemon(args: argparse.Namespace) -> int:
    from daemon.home_lock import HomeBusy
    from daemon.logfmt import LogFormatter
    from daemon.prices import PriceFileError
    from daemon.redis_server import RedisUnavailable
    from daemon.service import serve
    from daemon.settings import Settings

    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=os.environ.get("STEER_LOG_LEVEL", "INFO"), handlers=[handler])
    try:
        network = {} if args.sandbox_network is None else {"sandbox_network": args.sandbox_network}
        asyncio.run(serve(Settings(**network)))
    except (RedisUnavailable, HomeBusy, PriceFileError) as exc:
        print(f"steer: {exc}", file=sys.stderr)
        return 2
    return 0


def _stop_redis(args: argparse.Namespace) -> int:
    from daemon.redis_server import stop_embedded

    home = steer_home()
    print("stopped" if stop_embedded(home) else f"no embedded Redis running under {home}")
    return 0


def _sim(args: argparse.Namespace) -> int:
    from daemon.simulator import run_simulator

    run_simulator(
        host=args.host,
        port=args.port,
        scenarios_dir=args.scenarios,
        token_rate=args.token_rate,
        api_key=args.api_key,
    )
    return 0


def _client() -> DaemonClient:
    return DaemonClient(steer_home())


def _run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "task": args.task,
        "workdir": os.path.abspath(args.workdir),
        "approve": args.approve,
    }
    if args.name is not None and (problem := wire.name_problem(args.name)):
        raise ClientError(f"--name {args.name!r}: {problem}")
    body |= {k: v for k, v in {"model": args.model, "name": args.name}.items() if v}
    if args.max_parallel is not None:
        body["max_parallel_subagents"] = args.max_parallel
    body |= {"checks": args.checks, "protect": args.protect}
    optional = {
        "max_attempts": args.max_attempts,
        "check_timeout_s": args.check_timeout,
        "review_rounds": args.review_rounds,
        "budget_usd": args.budget_usd,
        "budget_tokens": args.budget_tokens,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    print(_client().post("/v1/sessions", body)["id"])
    return 0


def _tui(args: argparse.Namespace) -> int:
    from tui import tui

    home = steer_home()

    def credentials() -> tuple[str, str]:
        """The daemon's address and token, read again before each reconnect."""
        info = json.loads((home / DAEMON_FILE).read_text())
        return str(info["url"]), (home / TOKEN_FILE).read_text().strip()

    try:
        url, token = credentials()
    except (OSError, ValueError, KeyError) as exc:
        raise ClientError(f"{NOT_RUNNING}; looked in {home}", EXIT_UNREACHABLE) from exc
    archived = False
    if args.session is not None:  # refused here, before the dashboard takes the screen
        archived = bool(_client().get(_session_path(args.session)).get("archived"))
    return tui(
        url,
        token,
        credentials=credentials,
        session=args.session,
        author=_author(args),
        archived=archived,
    )


def _ls(args: argparse.Namespace) -> int:
    found = _client().get("/v1/sessions", archived=args.all, memory=args.json)
    sessions = [SessionSummary.model_validate(s) for s in found]
    if warning := stale_line(sessions):
        print(f"steer: {warning}", file=sys.stderr)
    if args.json:
        for s in sessions:
            print(safe_json(s.model_dump_json()))
    elif sessions:
        print(session_table(sessions))
    return 0


def _show(args: argparse.Namespace) -> int:
    ref, _, agent = args.session.partition("/")
    client = _client()
    session = SessionSummary.model_validate(client.get(_session_path(ref)))
    sid, agent = session.spec.id, agent or "root"
    messages = client.get(f"/v1/sessions/{sid}/agents/{quote(agent, safe='')}/messages")
    summary = next((a for a in session.agents if a.agent == agent), None)
    if args.json:
        shown = {
            "session": session.model_dump(mode="json"),
            "agent": summary.model_dump(mode="json") if summary else None,
            "messages": messages,
        }
        print(safe_json(json.dumps(shown)))
        return 0
    if summary is not None:
        explained = summary.status in ("needs_human", "budget_reached")
        reason = _status_reason(client, sid, agent) if explained else None
        print(agent_header(session, summary, reason=reason) + "\n")
    print(conversation(messages))
    return 0


def _status_reason(client: DaemonClient, sid: str, agent: str) -> str | None:
    """Why the agent is in its status: the reason of its last status change."""
    reason = None
    for line in client.lines(_session_path(sid, "events")):
        event = Frame.model_validate_json(line).event
        if isinstance(event, AgentStatusChanged) and event.agent == agent:
            reason = event.reason
    return reason


def _check(args: argparse.Namespace) -> int:
    """Ask for a round of checks, then follow the session's events to its result: the
    round that comes after this operator's `check` action."""
    client = _client()
    session = SessionSummary.model_validate(client.get(_session_path(args.session)))
    sid = session.spec.id
    client.post(_session_path(sid, "check"), {"author": _author(args)})
    asked = False
    for line in client.lines(_session_path(sid, "events"), since=session.last_seq, follow=True):
        frame = Frame.model_validate_json(line)
        match frame.event:
            case OperatorAction(agent="root", verb="check"):
                asked = True
            case ChecksStarted(agent="root") if asked and not args.json:
                print(frame_line(frame), flush=True)
            case ChecksFinished(agent="root") as finished if asked:
                if args.json:
                    print(safe_json(finished.model_dump_json()))
                else:
                    print("\n".join(check_evidence(finished.report, CHECK_TAIL_LINES)))
                    print(f"verdict: {finished.verdict}" + _why(finished.reason))
                return 0 if finished.verdict == "passed" else 1
    raise ClientError("the event stream ended before the checks finished", EXIT_UNREACHABLE)


def _why(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def _logs(args: argparse.Namespace) -> int:
    params = {"since": args.since, "follow": args.follow}
    client = _client()
    simulated = False
    if not args.json:  # costs are labelled simulated when the session's are
        session = SessionSummary.model_validate(client.get(_session_path(args.session)))
        simulated = session.spec.simulated
    for line in client.lines(_session_path(args.session, "events"), **params):
        if args.json:
            print(safe_json(line), flush=True)
        else:
            print(frame_line(Frame.model_validate_json(line), simulated=simulated), flush=True)
    return 0


def _cost(args: argparse.Namespace) -> int:
    client = _client()
    session = SessionSummary.model_validate(client.get(_session_path(args.session)))
    lines = client.lines(_session_path(session.spec.id, "events"))
    report = cost_report(session, (Frame.model_validate_json(line) for line in lines))
    print(safe_json(report.model_dump_json()) if args.json else cost_table(report))
    return 0


def _pause(args: argparse.Namespace) -> int:
    return _verb(args, "pause", now=args.now)


def _resume(args: argparse.Namespace) -> int:
    return _verb(args, "resume")


def _veto(args: argparse.Namespace) -> int:
    return _verb(args, "veto", reason=args.reason)


def _approve(args: argparse.Namespace) -> int:
    if args.call is not None:
        return _verb(args, f"approvals/{quote(args.call, safe='')}/approve")
    ref, agent = args.target
    if agent is not None:
        raise ClientError(
            "steer approve SESSION accepts a whole session's work: leave out /AGENT "
            "(or name the tool call: steer approve SESSION CALL)"
        )
    body = {"author": _author(args)}
    session = SessionSummary.model_validate(_client().post(_session_path(ref, "approve"), body))
    for summary in session.agents:
        if summary.parent is None:
            print(f"{address(summary)}  {summary.status}")
    return 0


def _budget(args: argparse.Namespace) -> int:
    if args.usd is None and args.tokens is None:
        raise ClientError("give a budget to set: --usd USD, --tokens N or both")
    body = {"usd": args.usd, "tokens": args.tokens, "author": _author(args)}
    path = _session_path(args.session, "budget")
    session = SessionSummary.model_validate(_client().post(path, body))
    print(f"{session.spec.id}  budget: {spent_of_budget(session)}")
    held = [a for a in session.agents if a.status == "budget_reached"]
    if held:
        print("still held by the budget: " + ", ".join(address(a) for a in held))
    return 0


def _deny(args: argparse.Namespace) -> int:
    return _verb(args, f"approvals/{quote(args.call, safe='')}/deny", reason=args.reason)


def _done(args: argparse.Namespace) -> int:
    body = {"author": _author(args)}
    session = SessionSummary.model_validate(
        _client().post(_session_path(args.session, "done"), body)
    )
    for summary in session.agents:
        print(f"{address(summary)}  {summary.status}")
    return 0


def _archive(args: argparse.Namespace) -> int:
    body = {
        "force": args.force,
        "undo": args.undo,
        "compact": args.compact,
        "author": _author(args),
    }
    path = _session_path(args.session, "archive")
    session = SessionSummary.model_validate(_client().post(path, body))
    state = "archived" if session.archived else "back from the archive"
    print(f"{session.spec.id}  {state}{', events compacted' if args.compact else ''}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    body = {"force": args.force, "author": _author(args)}
    removed = _client().post(_session_path(args.session, "remove"), body)
    print(f"{removed['id']}  removed ({removed['keys']} keys)")
    return 0


def _export(args: argparse.Namespace) -> int:
    for line in _client().lines(_session_path(args.session, "export")):
        sys.stdout.write(line + "\n")
    return 0


def _import(args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    answer = _client().post_content("/v1/sessions/import", data, "application/x-ndjson")
    print(SessionSummary.model_validate(answer).spec.id)
    return 0


def _redirect(args: argparse.Namespace) -> int:
    ref, agent = args.target
    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    body = {"text": text, "agent": agent, "author": _author(args)}
    print(_client().post(_session_path(ref, "redirect"), body)["nudge_id"])
    return 0


def _verb(args: argparse.Namespace, verb: str, **fields: Any) -> int:
    """POST a control verb; print the status of each agent it concerns afterwards, as
    the daemon answers it."""
    ref, agent = args.target
    body = {"agent": agent, "author": _author(args)} | {
        k: v for k, v in fields.items() if v is not None
    }
    session = SessionSummary.model_validate(_client().post(_session_path(ref, verb), body))
    for summary in session.agents:
        if agent is None or summary.agent == agent:
            print(f"{address(summary)}  {_after(verb, summary.status)}")
    return 0


def _after(verb: str, status: str) -> str:
    """An agent's status after `verb`: a pause the daemon accepted and the agent has not
    reached yet (at its next boundary, or once its model call is cancelled) is
    `pausing`, not the `running` its status still says."""
    if verb == "pause" and status not in ("paused", *SETTLED):
        return "pausing"
    return status


def _author(args: argparse.Namespace) -> str:
    return str(args.author or os.environ.get("USER") or "operator")


def _session_path(ref: str, *rest: str) -> str:
    return "/".join(("/v1/sessions", quote(ref, safe=""), *rest))


if __name__ == "__main__":
    sys.exit(main())
