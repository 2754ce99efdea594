"""The `steer` command: run the daemon or the simulator, and talk to a running daemon.

Every client command exits 0 on success, 1 on a refusal (unknown session or agent,
bad input, a verb the agent's state does not allow), and 2 on bad usage or when the
daemon (or its Redis) cannot be reached: the `nudge` command's table, which adds its
--wait outcomes (README, "Exit codes").

`--json` prints JSON Lines: a list (`ls`, `logs`) one object per item, so it streams
and `-f` follows; a single thing (`show`) one object on one line.

This module is the parser alone, and imports nothing heavy: `steer --help` must answer
in well under 100 ms. What each command does is in `daemon.cli_commands`, imported
once the arguments are parsed, and each command there imports what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys

from daemon.cli_vocabulary import (
    APPROVAL_POLICIES,
    DEFAULT_CHECK_TIMEOUT_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PARALLEL_SUBAGENTS,
    MAX_CHECKS,
    MAX_PARALLEL_SUBAGENTS,
)
from daemon.client import ClientError
from protocol.text import visible

# `typing` costs 4 ms of start-up; mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    Handler = Callable[[argparse.Namespace], int]

TARGET = "SESSION[/AGENT]"
TARGET_HELP = "a session (id, unique id prefix or name), or one of its agents as SESSION/AGENT"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from daemon import cli_commands  # once parsed: `steer --help` never imports it

    handler: Handler = getattr(cli_commands, args.handler)
    try:
        return int(handler(args) or 0)
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
    p.set_defaults(handler="daemon")
    _lifecycle_commands(sub)

    p = _command(
        sub, "stop-redis", help="shut down the embedded Redis (it outlives the daemon on purpose)"
    )
    p.set_defaults(handler="stop_redis")

    p = _command(sub, "sim", help="run the Messages API simulator in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--scenarios", help="a directory of extra scenario JSON files")
    p.add_argument("--token-rate", type=float, default=40.0, help="tokens per second (0: no delay)")
    p.add_argument("--api-key", help="require this key from clients (default: accept any)")
    p.set_defaults(handler="sim")

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
    p.set_defaults(handler="run")

    p = _command(
        sub,
        "tui",
        help="the live dashboard: every session and agent, their conversations, and keys "
        "to nudge, redirect, pause, resume, veto, approve and deny",
    )
    p.add_argument("session", nargs="?", help="a session to select first (id, prefix or name)")
    _author_arg(p)
    p.set_defaults(handler="tui")

    p = _command(sub, "ls", help="list sessions, then the tool calls waiting for approval")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line, with each session's memory in Redis "
        "(memory_bytes: MEMORY USAGE summed over its keys, approximate)",
    )
    p.add_argument("--all", action="store_true", help="archived sessions too")
    p.set_defaults(handler="ls")

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
    p.set_defaults(handler="show")

    p = _command(
        sub,
        "check",
        help="run a session's acceptance checks now (its agent must have ended its turn) "
        "and print the evidence (exit 1: they failed)",
    )
    p.add_argument("session", metavar="SESSION", help="a session (id, unique id prefix or name)")
    p.add_argument("--json", action="store_true", help="the check.finished event as one object")
    _author_arg(p)
    p.set_defaults(handler="check")

    p = _command(sub, "logs", help="print a session's events")
    p.add_argument("session")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--since", type=int, default=0, help="only events after this sequence number")
    p.add_argument("--json", action="store_true", help="one frame as JSON per line")
    p.set_defaults(handler="logs")

    p = _command(
        sub,
        "cost",
        help="what a session cost: by agent (subagents under their parents, cancelled "
        "requests included) and by nudge (tokens added, and what keeping the cache saved)",
    )
    p.add_argument("session", metavar="SESSION", help="a session (id, unique id prefix or name)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(handler="cost")

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
    p.set_defaults(handler="pause")

    p = _command(
        sub,
        "resume",
        help="continue a paused agent or retry a failed one (no /AGENT: every agent)",
    )
    _target_arg(p)
    _author_arg(p)
    p.set_defaults(handler="resume")

    p = _command(
        sub,
        "redirect",
        help="interrupt an agent now (model call or tool) and give it a correction; "
        "prints the nudge id",
    )
    _target_arg(p, "the agent (default: the root agent)")
    p.add_argument("text", metavar="TEXT", help='the correction; "-" reads it from stdin')
    _author_arg(p)
    p.set_defaults(handler="redirect")

    p = _command(
        sub,
        "veto",
        help="stop an agent and its subagents for good, telling its parent why "
        "(no /AGENT, or /root: the whole session)",
    )
    _target_arg(p)
    p.add_argument("--reason", help="why; the parent agent is told")
    _author_arg(p)
    p.set_defaults(handler="veto")

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
    p.set_defaults(handler="budget")

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
    p.set_defaults(handler="approve")

    p = _command(
        sub,
        "deny",
        help="refuse a tool call that waits for approval; the model gets an error result",
    )
    _target_arg(p, "the session, or SESSION/AGENT (call ids are unique, so /AGENT is optional)")
    p.add_argument("call", metavar="CALL", help="the tool call id")
    p.add_argument("--reason", help="why; the model is told")
    _author_arg(p)
    p.set_defaults(handler="deny")
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
    p.set_defaults(handler="done")

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
    p.set_defaults(handler="archive")

    p = _command(sub, "rm", help="delete a session and every key it has; refused while it runs")
    p.add_argument("session", metavar="SESSION", help=session_help)
    p.add_argument("--force", action="store_true", help="remove it even if it runs")
    _author_arg(p)
    p.set_defaults(handler="rm")

    p = _command(
        sub,
        "export",
        help="print a session's whole history as JSON Lines (conversations, events, nudges, "
        "checks, costs), for `steer import`",
    )
    p.add_argument("session", metavar="SESSION", help=session_help)
    p.set_defaults(handler="export")

    p = _command(
        sub,
        "import",
        help="load an export into this daemon as an archived, read-only session; prints its id",
    )
    p.add_argument("file", metavar="FILE", help='the export ("-": standard input)')
    p.set_defaults(handler="import_session")


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
    p.set_defaults(handler="start")
    p = _command(sub, "stop", help="stop the background daemon and wait until it is gone")
    p.set_defaults(handler="stop")
    p = _command(
        sub,
        "status",
        help="the daemon's pid, address, uptime, Redis and sessions by state (exit 3: not running)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler="status")
    p = _command(
        sub,
        "doctor",
        help="check Redis, the daemon, the token, the model and the cache, and say what "
        "to fix (exit 1: something to fix)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler="doctor")


def _completion_commands(sub: Any) -> None:
    from daemon.completion import SESSIONS_COMMAND, SHELLS

    p = _command(sub, "completion", help="print a shell completion script (bash, zsh or fish)")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(handler="completion", commands=list(sub.choices))  # every command so far
    # Hidden (no help): the session ids and names the completion scripts offer.
    sub.add_parser(SESSIONS_COMMAND).set_defaults(handler="sessions")


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


if __name__ == "__main__":
    sys.exit(main())
