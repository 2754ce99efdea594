"""scripts/example_client, the reference for plugin authors, against a real daemon."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from protocol.sessions import SessionSpec
from tests.api.support import Daemon
from tests.api.test_ws_verbs import status, until

CLIENT = Path(__file__).resolve().parents[2] / "scripts" / "example_client"


async def test_it_prints_a_sessions_events_and_sends_a_nudge(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with daemon.ws() as ws:
        spec = SessionSpec.model_validate(
            await ws.ok("start", task="[scenario:short] for the client", workdir=str(tmp_path))
        )
        await ws.ok("subscribe", sessions=[spec.id])
        await until(ws, spec.id, status("idle"))
    token_file = tmp_path / "token"
    token_file.write_text(daemon.token)

    client = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), spec.name, "--nudge", "add a changelog line",
        "--until", "nudge.applied", "--url", daemon.url, "--token-file", str(token_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(client.communicate(), 30)
    assert client.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("# attached: protocol 1")
    kinds = [line.split()[1] for line in lines if line[:5].strip().isdigit()]
    assert kinds[:2] == ["session.created", "agent.started"]  # replayed from the start
    assert kinds[-2:] == ["nudge.received", "nudge.applied"]
    assert any("add a changelog line" in line for line in lines)


async def test_a_wrong_token_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token")
    client = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), "anything", "--url", daemon.url,
        "--token-file", str(token_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(client.communicate(), 30)
    assert client.returncode != 0
    assert "401" in err.decode()
