"""The daemon's HTTP API under /v1 (FastAPI), served behind `daemon.guard.LoopbackGuard`.

Nudges sent here take the same Redis stream as the `nudge` command, so every
sender gets the same durability and effectively-once semantics.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import JsonValue

from daemon.agent_state import ROOT
from daemon.errors import UnknownSession
from daemon.store import Store
from daemon.supervisor import Supervisor
from protocol.envelope import PROTOCOL_VERSION
from protocol.nudges import Nudge, SendNudge
from protocol.sessions import SessionSpec, SessionSummary, StartSession

#: Well under redis-py's default 5 s socket timeout, which a longer BLOCK would hit.
FOLLOW_BLOCK_MS = 2_000


def create_api(supervisor: Supervisor, store: Store) -> FastAPI:
    app = FastAPI(title="steer", version=str(PROTOCOL_VERSION), docs_url=None, redoc_url=None)

    @app.exception_handler(UnknownSession)
    async def _unknown(request: Request, exc: UnknownSession) -> JSONResponse:
        return JSONResponse({"error": {"type": "unknown_session", "message": str(exc)}}, 404)

    @app.get("/v1/health")
    async def health() -> dict[str, JsonValue]:
        return {"ok": True, "protocol": PROTOCOL_VERSION, "pid": os.getpid()}

    @app.post("/v1/sessions", status_code=201)
    async def start_session(body: StartSession) -> SessionSpec:
        workdir = await asyncio.to_thread(_existing_dir, body.workdir)
        return await supervisor.create_session(body.model_copy(update={"workdir": workdir}))

    @app.get("/v1/sessions")
    async def list_sessions() -> list[SessionSummary]:
        return supervisor.summaries()

    @app.get("/v1/sessions/{ref}")
    async def get_session(ref: str) -> SessionSummary:
        return supervisor.summary(supervisor.resolve(ref))

    @app.get("/v1/sessions/{ref}/agents/{agent}/messages")
    async def get_messages(ref: str, agent: str) -> list[dict[str, JsonValue]]:
        return list(supervisor.core(supervisor.resolve(ref), agent).messages)

    @app.get("/v1/sessions/{ref}/events")
    async def get_events(ref: str, since: int = 0, follow: bool = False) -> StreamingResponse:
        sid = supervisor.resolve(ref)
        return StreamingResponse(
            _frames(store, sid, since, follow), media_type="application/x-ndjson"
        )

    @app.post("/v1/sessions/{ref}/nudges", status_code=202)
    async def send_nudge(ref: str, body: SendNudge) -> Nudge:
        sid = supervisor.resolve(ref)
        agent = body.agent if body.agent not in (None, ROOT) else None
        supervisor.core(sid, agent or ROOT)  # unknown agent: 404 now, not a rejection later
        nudge = Nudge(
            nudge_id=body.nudge_id or f"n-{os.urandom(8).hex()}",
            session=sid,
            agent=agent,
            mode=body.mode,
            text=body.text,
            author=body.author,
            sent_at=time.time(),
        )
        await store.send_nudge(nudge.to_fields())
        return nudge

    @app.post("/v1/sessions/{ref}/resume", status_code=202)
    async def resume(ref: str, agent: str | None = None) -> dict[str, JsonValue]:
        sid = supervisor.resolve(ref)
        supervisor.resume(sid, agent)
        return {"ok": True}

    return app


async def _frames(store: Store, sid: str, since: int, follow: bool) -> AsyncIterator[bytes]:
    while True:
        frames = await store.read_events(
            sid, since=since, block_ms=FOLLOW_BLOCK_MS if follow else None
        )
        for frame in frames:
            since = frame.seq
            yield frame.model_dump_json().encode() + b"\n"
        if not follow and not frames:
            return
        if follow and not frames:
            yield b"\n"  # keep-alive: lets the server notice a client that went away


def _existing_dir(path: str) -> str:
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise HTTPException(422, f"workdir is not a directory: {path}")
    return str(resolved)
