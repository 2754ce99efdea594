"""What each `steer` command does, once `daemon.cli` has parsed its arguments.

A command imports what it uses when it runs: the daemon, the simulator, the dashboard
and the protocol's event models each cost a command that does not need them 100 ms or
more. The commands that only talk to the daemon (ls, run, show and the control verbs)
work on the JSON it serves, as dicts, through the standard-library `DaemonClient`:
`steer ls` of a thousand sessions imports neither pydantic nor httpx.
"""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace
from pathlib import Path
from urllib.parse import quote

from daemon.cli_vocabulary import AGENT_STATUS_EVENT, SETTLED
from daemon.client import EXIT_UNREACHABLE, NOT_RUNNING, ClientError, DaemonClient
from daemon.paths import DAEMON_FILE, TOKEN_FILE, steer_home
from daemon.render import (
    address,
    agent_header,
    conversation,
    session_table,
    spent_of_budget,
    stale_line,
)
from protocol import wire
from protocol.text import safe_json

# `typing` costs 4 ms of start-up; mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: How many of a failing check's last output lines `steer check` prints.
CHECK_TAIL_LINES = 40


def daemon(args: Namespace) -> int:
    import asyncio
    import logging

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


def stop_redis(args: Namespace) -> int:
    from daemon.redis_server import stop_embedded

    home = steer_home()
    print("stopped" if stop_embedded(home) else f"no embedded Redis running under {home}")
    return 0


def sim(args: Namespace) -> int:
    from daemon.simulator import run_simulator

    run_simulator(
        host=args.host,
        port=args.port,
        scenarios_dir=args.scenarios,
        token_rate=args.token_rate,
        api_key=args.api_key,
    )
    return 0


def start(args: Namespace) -> int:
    from daemon import lifecycle

    extra = [] if args.sandbox_network is None else ["--sandbox-network", args.sandbox_network]
    return lifecycle.start(steer_home(), extra)


def stop(args: Namespace) -> int:
    from daemon import lifecycle

    return lifecycle.stop(steer_home())


def status(args: Namespace) -> int:
    from daemon import lifecycle

    return lifecycle.status(steer_home(), as_json=args.json)


def doctor(args: Namespace) -> int:
    from daemon.doctor import run as diagnose

    return diagnose(steer_home(), as_json=args.json)


def completion(args: Namespace) -> int:
    from daemon.completion import script

    print(script(args.shell, args.commands), end="")
    return 0


def sessions(args: Namespace) -> int:
    from daemon.completion import session_words

    print("\n".join(session_words()))
    return 0


def run(args: Namespace) -> int:
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


def tui(args: Namespace) -> int:
    from tui import tui as dashboard

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
    return dashboard(
        url,
        token,
        credentials=credentials,
        session=args.session,
        author=_author(args),
        archived=archived,
    )


def ls(args: Namespace) -> int:
    found = _client().get("/v1/sessions", archived=args.all, memory=args.json)
    if warning := stale_line(found):
        print(f"steer: {warning}", file=sys.stderr)
    if args.json:
        for session in found:
            print(safe_json(_compact_json(session)))
    elif found:
        print(session_table(found))
    return 0


def show(args: Namespace) -> int:
    ref, _, agent = args.session.partition("/")
    client = _client()
    session = client.get(_session_path(ref))
    sid, agent = session["spec"]["id"], agent or "root"
    messages = client.get(f"/v1/sessions/{sid}/agents/{quote(agent, safe='')}/messages")
    summary = next((a for a in session["agents"] if a["agent"] == agent), None)
    if args.json:
        shown = {"session": session, "agent": summary, "messages": messages}
        print(safe_json(json.dumps(shown)))
        return 0
    if summary is not None:
        explained = summary["status"] in ("needs_human", "budget_reached")
        reason = _status_reason(client, sid, agent) if explained else None
        print(agent_header(session, summary, reason=reason) + "\n")
    print(conversation(messages))
    return 0


def _status_reason(client: DaemonClient, sid: str, agent: str) -> str | None:
    """Why the agent is in its status: the reason of its last status change."""
    reason = None
    for line in client.lines(_session_path(sid, "events")):
        event = json.loads(line)["event"]
        if event["type"] == AGENT_STATUS_EVENT and event.get("agent") == agent:
            reason = event.get("reason")
    return reason


def check(args: Namespace) -> int:
    """Ask for a round of checks, then follow the session's events to its result: the
    round that comes after this operator's `check` action."""
    from daemon.render import check_evidence
    from daemon.render_events import frame_line
    from protocol.envelope import Frame
    from protocol.events import ChecksFinished, ChecksStarted, OperatorAction

    client = _client()
    session = client.get(_session_path(args.session))
    sid = session["spec"]["id"]
    client.post(_session_path(sid, "check"), {"author": _author(args)})
    asked = False
    for line in client.lines(_session_path(sid, "events"), since=session["last_seq"], follow=True):
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
                    report = finished.report.model_dump(mode="json")
                    print("\n".join(check_evidence(report, CHECK_TAIL_LINES)))
                    print(f"verdict: {finished.verdict}" + _why(finished.reason))
                return 0 if finished.verdict == "passed" else 1
    raise ClientError("the event stream ended before the checks finished", EXIT_UNREACHABLE)


def _why(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def logs(args: Namespace) -> int:
    params = {"since": args.since, "follow": args.follow}
    client = _client()
    events = _session_path(args.session, "events")
    if args.json:
        for line in client.lines(events, **params):
            print(safe_json(line), flush=True)
        return 0
    from daemon.render_events import frame_line
    from protocol.envelope import Frame

    # Costs are labelled simulated when the session's are.
    simulated = bool(client.get(_session_path(args.session))["spec"]["simulated"])
    for line in client.lines(events, **params):
        print(frame_line(Frame.model_validate_json(line), simulated=simulated), flush=True)
    return 0


def cost(args: Namespace) -> int:
    from daemon.cost_report import cost_report, cost_table
    from protocol.envelope import Frame
    from protocol.sessions import SessionSummary

    client = _client()
    session = SessionSummary.model_validate(client.get(_session_path(args.session)))
    lines = client.lines(_session_path(session.spec.id, "events"))
    report = cost_report(session, (Frame.model_validate_json(line) for line in lines))
    print(safe_json(report.model_dump_json()) if args.json else cost_table(report))
    return 0


def pause(args: Namespace) -> int:
    return _verb(args, "pause", now=args.now)


def resume(args: Namespace) -> int:
    return _verb(args, "resume")


def veto(args: Namespace) -> int:
    return _verb(args, "veto", reason=args.reason)


def approve(args: Namespace) -> int:
    if args.call is not None:
        return _verb(args, f"approvals/{quote(args.call, safe='')}/approve")
    ref, agent = args.target
    if agent is not None:
        raise ClientError(
            "steer approve SESSION accepts a whole session's work: leave out /AGENT "
            "(or name the tool call: steer approve SESSION CALL)"
        )
    body = {"author": _author(args)}
    session = _client().post(_session_path(ref, "approve"), body)
    for summary in session["agents"]:
        if summary["parent"] is None:
            print(f"{address(summary)}  {summary['status']}")
    return 0


def budget(args: Namespace) -> int:
    if args.usd is None and args.tokens is None:
        raise ClientError("give a budget to set: --usd USD, --tokens N or both")
    body = {"usd": args.usd, "tokens": args.tokens, "author": _author(args)}
    session = _client().post(_session_path(args.session, "budget"), body)
    print(f"{session['spec']['id']}  budget: {spent_of_budget(session)}")
    held = [a for a in session["agents"] if a["status"] == "budget_reached"]
    if held:
        print("still held by the budget: " + ", ".join(address(a) for a in held))
    return 0


def deny(args: Namespace) -> int:
    return _verb(args, f"approvals/{quote(args.call, safe='')}/deny", reason=args.reason)


def done(args: Namespace) -> int:
    body = {"author": _author(args)}
    session = _client().post(_session_path(args.session, "done"), body)
    for summary in session["agents"]:
        print(f"{address(summary)}  {summary['status']}")
    return 0


def archive(args: Namespace) -> int:
    body = {
        "force": args.force,
        "undo": args.undo,
        "compact": args.compact,
        "author": _author(args),
    }
    session = _client().post(_session_path(args.session, "archive"), body)
    state = "archived" if session["archived"] else "back from the archive"
    print(f"{session['spec']['id']}  {state}{', events compacted' if args.compact else ''}")
    return 0


def rm(args: Namespace) -> int:
    body = {"force": args.force, "author": _author(args)}
    removed = _client().post(_session_path(args.session, "remove"), body)
    print(f"{removed['id']}  removed ({removed['keys']} keys)")
    return 0


def export(args: Namespace) -> int:
    for line in _client().lines(_session_path(args.session, "export")):
        sys.stdout.write(line + "\n")
    return 0


def import_session(args: Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    answer = _client().post_content("/v1/sessions/import", data, "application/x-ndjson")
    print(answer["spec"]["id"])
    return 0


def redirect(args: Namespace) -> int:
    ref, agent = args.target
    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    body = {"text": text, "agent": agent, "author": _author(args)}
    print(_client().post(_session_path(ref, "redirect"), body)["nudge_id"])
    return 0


def _verb(args: Namespace, verb: str, **fields: Any) -> int:
    """POST a control verb; print the status of each agent it concerns afterwards, as
    the daemon answers it."""
    ref, agent = args.target
    body = {"agent": agent, "author": _author(args)} | {
        k: v for k, v in fields.items() if v is not None
    }
    session = _client().post(_session_path(ref, verb), body)
    for summary in session["agents"]:
        if agent is None or summary["agent"] == agent:
            print(f"{address(summary)}  {_after(verb, summary['status'])}")
    return 0


def _after(verb: str, status: str) -> str:
    """An agent's status after `verb`: a pause the daemon accepted and the agent has not
    reached yet (at its next boundary, or once its model call is cancelled) is
    `pausing`, not the `running` its status still says."""
    if verb == "pause" and status not in ("paused", *SETTLED):
        return "pausing"
    return status


def _client() -> DaemonClient:
    return DaemonClient(steer_home())


def _author(args: Namespace) -> str:
    return str(args.author or os.environ.get("USER") or "operator")


def _session_path(ref: str, *rest: str) -> str:
    return "/".join(("/v1/sessions", quote(ref, safe=""), *rest))


def _compact_json(value: object) -> str:
    """JSON as the daemon writes it (and as pydantic's `model_dump_json` did): no
    spaces, non-ASCII as it is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
