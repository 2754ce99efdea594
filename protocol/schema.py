"""The JSON Schema of every websocket frame and HTTP body, for editor plugins.

`python -m protocol.schema` prints it; `--write PATH` writes it; `--check PATH` exits 1
when the file is not what the models generate (the test suite runs that check on
docs/protocol.schema.json, so the checked-in schema can never drift from the code).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter

from protocol.commands import Command
from protocol.envelope import PROTOCOL_VERSION
from protocol.nudges import SendNudge
from protocol.sessions import SessionSpec, SessionSummary, StartSession
from protocol.websocket import ServerMessage

#: The named entry points: what a client sends, what the daemon sends, and HTTP bodies.
ROOTS: dict[str, Any] = {
    "Command": Command,
    "ServerMessage": ServerMessage,
    "StartSession": StartSession,
    "SendNudge": SendNudge,
    "SessionSpec": SessionSpec,
    "SessionSummary": SessionSummary,
}


def schema() -> dict[str, Any]:
    mode: Literal["validation"] = "validation"
    inputs = [(name, mode, TypeAdapter(kind)) for name, kind in ROOTS.items()]
    roots, definitions = TypeAdapter.json_schemas(inputs, ref_template="#/$defs/{model}")
    defs = dict(definitions.get("$defs", {}))
    for (name, _), root in roots.items():
        if name not in defs:
            defs[name] = root
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"steer protocol v{PROTOCOL_VERSION}",
        "description": (
            "Websocket /v1/ws: a client sends one Command per text frame; the daemon sends "
            "one ServerMessage per text frame. See docs/protocol.md."
        ),
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protocol.schema", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="PATH", help="write the schema to PATH")
    group.add_argument("--check", type=Path, metavar="PATH", help="exit 1 if PATH is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.write_text(text)
    elif args.check:
        current = args.check.read_text() if args.check.exists() else ""
        if current != text:
            print(
                f"{args.check} is stale: run python -m protocol.schema --write {args.check}",
                file=sys.stderr,
            )
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
