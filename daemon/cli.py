"""The `steer` command: run the daemon or the simulator, and talk to a running daemon.

Every client command exits 0 on success, 1 on a daemon-side refusal (unknown
session, bad input) and 2 when the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from daemon.client import NOT_RUNNING, ClientError, DaemonClient
from daemon.paths import steer_home
from daemon.render import conversation, frame_line, session_table
from protocol.envelope import Frame
from protocol.sessions import SessionSummary


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ClientError as exc:
        print(f"steer: {exc}", file=sys.stderr)
        return 2 if str(exc).startswith(NOT_RUNNING) else 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steer",
        description="Keep Claude agent sessions alive in a daemon and steer them live. "
        'Send corrections with: nudge SESSION "TEXT".',
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("daemon", help="run the daemon in the foreground")
    p.set_defaults(func=_daemon)

    p = sub.add_parser(
        "stop-redis", help="shut down the embedded Redis (it outlives the daemon on purpose)"
    )
    p.set_defaults(func=_stop_redis)

    p = sub.add_parser("sim", help="run the Messages API simulator in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--scenarios", help="a directory of extra scenario JSON files")
    p.add_argument("--token-rate", type=float, default=40.0, help="tokens per second (0: no delay)")
    p.add_argument("--api-key", help="require this key from clients (default: accept any)")
    p.set_defaults(func=_sim)

    p = sub.add_parser("run", help="start a session; prints its id")
    p.add_argument("task")
    p.add_argument("--workdir", default=".", help="the directory the agent works in (default: .)")
    p.add_argument("--model", help="the model (default: the daemon's STEER_MODEL)")
    p.add_argument("--name", help="a name to refer to the session by")
    p.set_defaults(func=_run)

    p = sub.add_parser("ls", help="list sessions")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_ls)

    p = sub.add_parser("show", help="show a session's conversation, nudges where they landed")
    p.add_argument("session", help="SESSION or SESSION/AGENT (id, unique id prefix or name)")
    p.add_argument("--json", action="store_true", help="the raw messages as JSON")
    p.set_defaults(func=_show)

    p = sub.add_parser("logs", help="print a session's events")
    p.add_argument("session")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--since", type=int, default=0, help="only events after this sequence number")
    p.add_argument("--json", action="store_true", help="one frame as JSON per line")
    p.set_defaults(func=_logs)

    p = sub.add_parser("resume", help="retry a failed agent (SESSION or SESSION/AGENT)")
    p.add_argument("session")
    p.set_defaults(func=_resume)
    return parser


def _daemon(args: argparse.Namespace) -> int:
    from daemon.redis_server import RedisUnavailable
    from daemon.service import serve
    from daemon.settings import Settings

    logging.basicConfig(
        level=os.environ.get("STEER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        asyncio.run(serve(Settings()))
    except RedisUnavailable as exc:
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
    body = {"task": args.task, "workdir": os.path.abspath(args.workdir)}
    body |= {k: v for k, v in {"model": args.model, "name": args.name}.items() if v}
    print(_client().post("/v1/sessions", body)["id"])
    return 0


def _ls(args: argparse.Namespace) -> int:
    sessions = [SessionSummary.model_validate(s) for s in _client().get("/v1/sessions")]
    if args.json:
        for s in sessions:
            print(s.model_dump_json())
    elif sessions:
        print(session_table(sessions))
    return 0


def _show(args: argparse.Namespace) -> int:
    ref, _, agent = args.session.partition("/")
    client = _client()
    sid = client.get(f"/v1/sessions/{ref}")["spec"]["id"]
    messages = client.get(f"/v1/sessions/{sid}/agents/{agent or 'root'}/messages")
    print(json.dumps(messages, indent=2) if args.json else conversation(messages))
    return 0


def _logs(args: argparse.Namespace) -> int:
    params = {"since": args.since, "follow": args.follow}
    for line in _client().lines(f"/v1/sessions/{args.session}/events", **params):
        print(line if args.json else frame_line(Frame.model_validate_json(line)), flush=True)
    return 0


def _resume(args: argparse.Namespace) -> int:
    ref, _, agent = args.session.partition("/")
    path = f"/v1/sessions/{ref}/resume" + (f"?agent={agent}" if agent else "")
    _client().post(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
