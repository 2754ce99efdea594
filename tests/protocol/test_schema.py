"""The checked-in JSON Schema is what the protocol models generate, and it describes
real frames."""

from __future__ import annotations

from pathlib import Path

from protocol.schema import main, schema

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json"


def test_the_checked_in_schema_is_current() -> None:
    assert main(["--check", str(CHECKED_IN)]) == 0, (
        "docs/protocol.schema.json is stale: run python -m protocol.schema --write "
        "docs/protocol.schema.json"
    )


def test_a_stale_schema_is_reported(tmp_path: Path) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text(CHECKED_IN.read_text().replace("resync", "resynch"))
    assert main(["--check", str(stale)]) == 1


def test_every_command_and_server_message_type_is_described() -> None:
    defs = schema()["$defs"]
    command_types = {
        defs[ref.rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in defs["Command"]["discriminator"]["mapping"].values()
    }
    assert command_types == set(defs["Command"]["discriminator"]["mapping"])
    assert {"ping", "subscribe", "nudge", "pause", "veto", "approve", "deny"} <= command_types
    server_types = set(defs["ServerMessage"]["discriminator"]["mapping"])
    assert server_types == {"hello", "ack", "event", "delta", "resync"}
