"""The daemon's HTTP API under /v1 (FastAPI), served behind `daemon.guard.LoopbackGuard`.

Every action builds the same `protocol.commands` model the websocket carries and
hands it to `daemon.commands.execute`, so HTTP and websocket clients share one code
path and get the same refusals. A refusal is `{"error": {"code", "message"}}` with
the HTTP status of its code (`daemon.errors.HTTP_STATUS`); a malformed request is the
same shape with code `invalid` (422). The OpenAPI document is at /v1/openapi.json,
behind the token like every other route; there is no docs UI.

Nudges sent here take the same Redis stream as the `nudge` command, so every
sender gets the same durability and effectively-once semantics.

Reads are served from what the supervisor holds in memory; while the daemon cannot
reach Redis (`RedisMonitor`), `/v1/health` says so and session summaries carry
`stale_since`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from daemon.commands import execute
from daemon.errors import HTTP_STATUS, CommandError, UnknownAgent, UnknownSession
from daemon.follow import follow as follow_events
from daemon.hub import Hub
from daemon.life import Removed
from daemon.redis_health import RedisMonitor, stale
from daemon.store import Store
from daemon.supervisor import Supervisor
from daemon.transfer import MAX_IMPORT, export_lines, parse_export
from daemon.transfer import import_session as import_export
from protocol.commands import (
    Approve,
    ApproveRequest,
    ApproveSession,
    ApproveSessionRequest,
    Archive,
    ArchiveRequest,
    BudgetRequest,
    Check,
    CheckRequest,
    Deny,
    DenyRequest,
    DoneRequest,
    EndSession,
    ErrorCode,
    ErrorInfo,
    Pause,
    PauseRequest,
    Redirect,
    RedirectRequest,
    Remove,
    RemoveRequest,
    Resume,
    ResumeRequest,
    SendNudgeCommand,
    SetBudget,
    Start,
    Veto,
    VetoRequest,
)
from protocol.envelope import PROTOCOL_VERSION
from protocol.nudges import Nudge, SendNudge
from protocol.sessions import AgentSummary, SessionSpec, SessionSummary, StartSession

SessionRef = Annotated[
    str, Path(min_length=1, max_length=64, description="session id, unique id prefix or name")
]
AgentRef = Annotated[str, Path(min_length=1, max_length=64, description="agent id ('root')")]
CallId = Annotated[str, Path(min_length=1, max_length=128, description="tool call id")]

C = TypeVar("C", bound=BaseModel)


class ErrorResponse(BaseModel):
    """Every refusal: a protocol error code and a one-line message."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorInfo


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: False while Redis is down: agents cannot record progress, figures are stale.
    ok: bool
    protocol: int
    pid: int
    redis: Literal["up", "down"]
    #: When Redis was last seen to come up or go down (unix time).
    redis_since: float
    #: The last failure to reach Redis (kept once it is back), if any.
    redis_error: str | None = None


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


#: The error code of a refusal the framework makes before a route runs, by status.
FRAMEWORK_CODES: dict[int, ErrorCode] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
}

#: How every route is authorised (the guard checks it before any route runs).
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the daemon's token, from STEER_HOME/token",
    }
}

#: The refusals any route may answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("bad_frame: the body is not JSON"),
    401: _documented("unauthorized: missing or wrong token"),
    403: _documented("forbidden: the Host header does not name this daemon on loopback"),
    404: _documented("unknown_session, unknown_agent, or not_found: no such route"),
    409: _documented("not_pending or conflict: the agent's state does not allow it"),
    413: _documented("too_large: the request body is over the limit"),
    422: _documented("invalid: a path, query or body field is wrong"),
    503: _documented("unavailable: Redis is down; retry later"),
}

# The bodies of verbs whose every field has a default: sending none is sending {}.
_NO_PAUSE = PauseRequest()
_NO_RESUME = ResumeRequest()
_NO_VETO = VetoRequest()
_NO_APPROVE = ApproveRequest()
_NO_DENY = DenyRequest()
_NO_CHECK = CheckRequest()
_NO_APPROVE_SESSION = ApproveSessionRequest()
_NO_DONE = DoneRequest()
_NO_ARCHIVE = ArchiveRequest()
_NO_REMOVE = RemoveRequest()


def create_api(supervisor: Supervisor, store: Store, hub: Hub, redis: RedisMonitor) -> FastAPI:
    """The routes; `store` and `hub` read events (with the readers' Redis pool)."""
    app = FastAPI(
        title="steer",
        version=str(PROTOCOL_VERSION),
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )

    @app.exception_handler(CommandError)
    async def _refused(request: Request, exc: CommandError) -> JSONResponse:
        return error_response(exc.code, exc.message)

    @app.exception_handler(HTTPException)
    async def _not_a_command(request: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own refusals: a body it cannot parse (400), no such route (404),
        # a method the route does not take (405).
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
            message = f"{request.url.path} does not take {request.method} (it takes {allowed})"
        else:
            message = str(exc.detail)
        code = FRAMEWORK_CODES.get(exc.status_code, "bad_frame")
        body = ErrorResponse(error=ErrorInfo(code=code, message=message))
        return JSONResponse(body.model_dump(mode="json"), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for error in errors:
            if error.get("type") == "json_invalid":
                reason = error.get("ctx", {}).get("error") or error.get("msg")
                return error_response("bad_frame", f"the body is not JSON: {reason}")
        return error_response("invalid", describe_errors(errors))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return error_response("unavailable", f"Redis is unavailable: {exc}")

    directory = supervisor.directory

    async def agent_of(sid: str, agent: str) -> AgentSummary:
        for summary in (await directory.summary(sid)).agents:
            if summary.agent == agent:
                return summary
        raise UnknownAgent(f"unknown agent {sid}/{agent}")

    # -- reading ----------------------------------------------------------------

    @app.get("/v1/health")
    async def health() -> Health:
        status = redis.status
        return Health(
            ok=status.up,
            protocol=PROTOCOL_VERSION,
            pid=os.getpid(),
            redis="up" if status.up else "down",
            redis_since=status.since,
            redis_error=status.error,
        )

    @app.get("/v1/sessions")
    async def list_sessions(
        archived: Annotated[bool, Query(description="archived sessions too")] = False,
        memory: Annotated[
            bool, Query(description="each session's memory in Redis (approximate)")
        ] = False,
    ) -> list[SessionSummary]:
        found = await directory.summaries(archived=archived, memory=memory)
        return stale(found, redis.stale_since)

    @app.get("/v1/sessions/{ref}")
    async def get_session(ref: SessionRef) -> SessionSummary:
        summary = await directory.summary(await directory.resolve(ref))
        return stale([summary], redis.stale_since)[0]

    @app.get("/v1/sessions/{ref}/agents")
    async def list_agents(ref: SessionRef) -> list[AgentSummary]:
        return (await directory.summary(await directory.resolve(ref))).agents

    @app.get("/v1/sessions/{ref}/agents/{agent}")
    async def get_agent(ref: SessionRef, agent: AgentRef) -> AgentSummary:
        return await agent_of(await directory.resolve(ref), agent)

    @app.get("/v1/sessions/{ref}/agents/{agent}/messages")
    async def get_messages(ref: SessionRef, agent: AgentRef) -> list[dict[str, JsonValue]]:
        """The agent's conversation, exactly as sent to the model."""
        return await directory.messages(await directory.resolve(ref), agent)

    @app.get(
        "/v1/sessions/{ref}/events",
        response_class=NDJSONResponse,
        responses={
            200: {
                "description": "one `Frame` as JSON per line; with `follow`, blank "
                "keep-alive lines while nothing happens",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            }
        },
    )
    async def get_events(
        ref: SessionRef,
        since: Annotated[int, Query(ge=0, description="only events after this seq")] = 0,
        follow: Annotated[bool, Query(description="keep streaming new events")] = False,
    ) -> NDJSONResponse:
        sid = await directory.resolve(ref)
        if follow:
            return NDJSONResponse(follow_events(hub, sid, since))
        return NDJSONResponse(_frames(store, sid, since))

    # -- acting -----------------------------------------------------------------

    @app.post("/v1/sessions", status_code=201)
    async def start_session(body: StartSession) -> SessionSpec:
        result = await execute(supervisor, command(Start, **body.model_dump()))
        return SessionSpec.model_validate(result)

    @app.post("/v1/sessions/{ref}/nudges", status_code=202)
    async def send_nudge(ref: SessionRef, body: SendNudge) -> Nudge:
        """Queue a nudge (any mode); it is applied at the agent's next boundary."""
        sid = await directory.resolve(ref)
        cmd = command(SendNudgeCommand, session=sid, **body.model_dump())
        return Nudge.model_validate(await execute(supervisor, cmd))

    @app.post("/v1/sessions/{ref}/redirect", status_code=202)
    async def redirect(ref: SessionRef, body: RedirectRequest) -> Nudge:
        """Interrupt the agent now (model call or tool) and deliver the text at once."""
        sid = await directory.resolve(ref)
        cmd = command(Redirect, session=sid, **body.model_dump())
        return Nudge.model_validate(await execute(supervisor, cmd))

    @app.post("/v1/sessions/{ref}/pause")
    async def pause(ref: SessionRef, body: PauseRequest = _NO_PAUSE) -> SessionSummary:
        """Hold the agent (no `agent`: every agent) at its next boundary; `now` cancels
        an in-flight model call first. Answers the session as it is afterwards."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(Pause, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/resume")
    async def resume(ref: SessionRef, body: ResumeRequest = _NO_RESUME) -> SessionSummary:
        """Continue a paused agent or retry a failed one (no `agent`: every agent)."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(Resume, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/veto")
    async def veto(ref: SessionRef, body: VetoRequest = _NO_VETO) -> SessionSummary:
        """Stop the agent and its descendants for good (no `agent`: the session)."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(Veto, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/approvals/{call_id}/approve")
    async def approve(
        ref: SessionRef, call_id: CallId, body: ApproveRequest = _NO_APPROVE
    ) -> SessionSummary:
        """Let a pending tool call run."""
        sid = await directory.resolve(ref)
        cmd = command(Approve, session=sid, call_id=call_id, **body.model_dump())
        await execute(supervisor, cmd)
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/approvals/{call_id}/deny")
    async def deny(
        ref: SessionRef, call_id: CallId, body: DenyRequest = _NO_DENY
    ) -> SessionSummary:
        """Refuse a pending tool call; the model gets an error result with `reason`."""
        sid = await directory.resolve(ref)
        cmd = command(Deny, session=sid, call_id=call_id, **body.model_dump())
        await execute(supervisor, cmd)
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/check", status_code=202)
    async def check(ref: SessionRef, body: CheckRequest = _NO_CHECK) -> SessionSummary:
        """Run the acceptance checks now; their result comes as events."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(Check, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/approve")
    async def approve_session(
        ref: SessionRef, body: ApproveSessionRequest = _NO_APPROVE_SESSION
    ) -> SessionSummary:
        """Accept the reviewed work of a session awaiting approval: it ends as done."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(ApproveSession, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    # -- a session's life ---------------------------------------------------------

    @app.post("/v1/sessions/{ref}/done")
    async def end_session(ref: SessionRef, body: DoneRequest = _NO_DONE) -> SessionSummary:
        """End the session on purpose, without a veto: its root agent and every agent
        that has not settled stop what they run and end as done."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(EndSession, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/archive")
    async def archive(ref: SessionRef, body: ArchiveRequest = _NO_ARCHIVE) -> SessionSummary:
        """Keep the session in Redis but out of listings, its agents not driven (`undo`:
        bring it back). Refused while it runs, unless `force` (which ends it first)."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(Archive, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    @app.post("/v1/sessions/{ref}/remove")
    async def remove(ref: SessionRef, body: RemoveRequest = _NO_REMOVE) -> Removed:
        """Delete every key of the session. Refused while it runs, unless `force`."""
        sid = await directory.resolve(ref)
        result = await execute(supervisor, command(Remove, session=sid, **body.model_dump()))
        return Removed.model_validate(result)

    @app.get(
        "/v1/sessions/{ref}/export",
        response_class=NDJSONResponse,
        responses={
            200: {
                "description": "the session's whole history as JSON Lines: a header line "
                "(format, session, exported_at), then its spec, agents, messages, standing "
                "nudges, protected files and every event (docs/protocol.md, Export)",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            }
        },
    )
    async def export_session(ref: SessionRef) -> NDJSONResponse:
        sid = await directory.resolve(ref)
        if await store.load_spec(sid) is None:
            raise UnknownSession(f"unknown session {ref!r}")
        return NDJSONResponse(export_lines(store, sid))

    @app.post(
        "/v1/sessions/import",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": f"an export (`GET /v1/sessions/{{ref}}/export`), at most "
                f"{MAX_IMPORT // (1024 * 1024)} MiB",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            }
        },
    )
    async def import_session(request: Request) -> SessionSummary:
        """Load an export as an archived, read-only session (its id and name must be
        free here): show, logs and the dashboard read it; verbs and nudges are refused."""
        try:
            lines = (await request.body()).decode().splitlines()
        except UnicodeDecodeError as exc:
            raise CommandError("invalid", f"the export is not UTF-8: {exc}") from None
        spec = await import_export(supervisor.store, parse_export(lines))
        return await directory.summary(spec.id)

    @app.post("/v1/sessions/{ref}/budget")
    async def set_budget(ref: SessionRef, body: BudgetRequest) -> SessionSummary:
        """Set (say raise) the session's budget: the limits given, the others kept. Agents
        held as `budget_reached` go on if it now allows."""
        sid = await directory.resolve(ref)
        await execute(supervisor, command(SetBudget, session=sid, **body.model_dump()))
        return await directory.summary(sid)

    openapi = app.openapi

    def openapi_with_json_errors() -> dict[str, Any]:
        # FastAPI files a streaming route's documented refusals under its own media type;
        # they are JSON like everywhere else.
        schema = openapi()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
        for operation in (op for ops in schema["paths"].values() for op in ops.values()):
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if not status.startswith("2") and NDJSONResponse.media_type in content:
                    content["application/json"] = content.pop(NDJSONResponse.media_type)
        return schema

    app.openapi = openapi_with_json_errors  # type: ignore[method-assign]
    return app


def command(kind: type[C], /, **fields: Any) -> C:
    """The protocol command for one HTTP request (its id only names it in logs)."""
    try:
        return kind.model_validate({"id": f"http-{secrets.token_hex(4)}", **fields})
    except ValidationError as exc:
        raise CommandError("invalid", describe_errors(exc.errors())) from None


def error_response(code: ErrorCode, message: str) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message))
    return JSONResponse(body.model_dump(mode="json"), HTTP_STATUS[code])


def describe_errors(errors: Sequence[Any]) -> str:
    """Validation errors as one line: `where: what; ...`."""
    parts = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[1:] if loc[:1] in (["body"], ["query"], ["path"]) else loc)
        parts.append(f"{where or 'body'}: {error.get('msg')}")
    return "; ".join(parts) or "invalid request"


async def _frames(store: Store, sid: str, since: int) -> AsyncIterator[bytes]:
    while frames := await store.read_events(sid, since=since):
        for frame in frames:
            since = frame.seq
            yield frame.model_dump_json().encode() + b"\n"
