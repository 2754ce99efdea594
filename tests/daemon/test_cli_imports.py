"""`steer` starts fast because of what it does not import: the parser imports argparse
alone, and the commands that only talk to the daemon (ls, run, show, the verbs) work on
its JSON over a plain socket. Checked in a fresh interpreter, by module names:
timings are the benchmarks' business (scripts/bench_scale)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from daemon import cli, cli_commands

#: What no client command of the daemon's JSON may import: each costs 15-150 ms.
HEAVY = ("pydantic", "httpx", "asyncio", "anthropic", "redis", "protocol.sessions", "http", "ssl")


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    probe = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)


def test_the_parser_imports_neither_the_commands_nor_http() -> None:
    modules = imported_after("from daemon import cli\ncli._parser().parse_args(['ls'])")
    assert heavy(modules) == []
    assert "daemon.cli_commands" not in modules


def test_the_commands_on_the_daemons_json_import_nothing_heavy() -> None:
    assert heavy(imported_after("import daemon.cli_commands")) == []


def test_every_command_has_its_handler() -> None:
    subparsers = next(
        a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    for name, parser in subparsers.choices.items():
        assert callable(getattr(cli_commands, parser.get_default("handler"))), name
