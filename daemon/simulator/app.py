"""The simulator's HTTP surface: the Messages API routes and the ``/_sim`` controls.

Routes: ``POST /v1/messages`` (JSON, or SSE with ``"stream": true``),
``POST /v1/messages/count_tokens``, ``GET /v1/models``; controls ``POST|GET|DELETE
/_sim/faults``, ``GET|DELETE /_sim/requests``, ``POST /_sim/clock``. Every route
wants a key (``x-api-key`` or ``Authorization: Bearer``; it must equal the
configured one if there is one), every response carries a ``request-id`` header,
and every error has the API's body shape. The work per request is done by the other
modules: request (validation) → tokens (rendering) → cache → diagnostics → script
(the reply) → sse.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from daemon.catalog import CATALOG
from daemon.simulator.cache import Breakpoint, PromptCache, find_breakpoints
from daemon.simulator.config import SimClock, SimulatorConfig
from daemon.simulator.diagnostics import DiagnosticsStore, Fingerprint
from daemon.simulator.errors import (
    ApiError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    RateLimited,
    SimulatedDrop,
    Unauthenticated,
)
from daemon.simulator.faults import Fault, FaultQueue, retry_after_header
from daemon.simulator.recording import Recorded, RequestLog
from daemon.simulator.request import MessagesRequest, parse_betas, parse_request
from daemon.simulator.scenario import ScenarioBook
from daemon.simulator.script import plan_reply
from daemon.simulator.sse import Interruption, stream_message
from daemon.simulator.tokens import Prompt, render_prompt

log = logging.getLogger("daemon.simulator")

Handler = Callable[[Request, str], Awaitable[Response]]


class Simulator:
    """The state behind one app: scenarios, cache, fingerprints, faults, request log."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clock = SimClock(config.clock)
        self.scenarios = ScenarioBook.load(config.scenarios_dir)
        self.cache = PromptCache(self.clock)
        self.diagnostics = DiagnosticsStore()
        self.faults = FaultQueue()
        self.requests = RequestLog(config.max_recorded)


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """An ASGI app simulating the Messages API; raises ScenarioError on a bad scenario."""
    routes = _Routes(Simulator(config or SimulatorConfig()))
    api = routes.api
    return Starlette(
        routes=[
            Route("/v1/messages", api(routes.messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", api(routes.count_tokens), methods=["POST"]),
            Route("/v1/models", api(routes.models), methods=["GET"]),
            Route("/_sim/faults", api(routes.faults), methods=["GET", "POST", "DELETE"]),
            Route("/_sim/requests", api(routes.recorded), methods=["GET", "DELETE"]),
            Route("/_sim/clock", api(routes.clock), methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )


class _Routes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate, give the request an id, and turn ApiErrors into API error bodies."""

        async def endpoint(request: Request) -> Response:
            request_id = _new_id("req_")
            try:
                self._authenticate(request)
                response = await handler(request, request_id)
            except ApiError as error:
                response = _error_response(error, request_id)
            response.headers["request-id"] = request_id
            return response

        return endpoint

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get("x-api-key")
        if key is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise Unauthenticated("x-api-key header is required")
        expected = self.sim.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            raise Unauthenticated("invalid x-api-key")

    # -- Messages API -------------------------------------------------------------

    async def messages(self, request: Request, request_id: str) -> Response:
        body = await _json_body(request)
        record = Recorded(request_id, request.url.path, body)
        try:
            parsed, prompt, breakpoints = self._prepare(request, body, count_only=False)
            record.stream = parsed.stream
            fault = self.sim.faults.take()
            if fault is not None:
                record.fault = fault.kind
                _refuse(fault, parsed.stream)
            return self._reply(request, parsed, prompt, breakpoints, record, fault)
        except ApiError as error:
            record.status = error.status
            raise
        finally:
            self.sim.requests.add(record)

    def _prepare(
        self, request: Request, body: object, *, count_only: bool
    ) -> tuple[MessagesRequest, Prompt, list[Breakpoint]]:
        """Validate the request completely (all 400s come from here) and render it."""
        betas = parse_betas(request.headers.get("anthropic-beta"))
        parsed = parse_request(body, betas=betas, count_only=count_only)
        prompt = render_prompt(parsed)
        return parsed, prompt, find_breakpoints(prompt.positions, parsed.cache_control)

    def _reply(
        self,
        request: Request,
        parsed: MessagesRequest,
        prompt: Prompt,
        breakpoints: list[Breakpoint],
        record: Recorded,
        fault: Fault | None,
    ) -> Response:
        cache_usage = self.sim.cache.apply(parsed.model, prompt.positions, breakpoints)
        message_id = _new_id("msg_01")
        fingerprint = Fingerprint.of(parsed, prompt)
        diagnostics = self.sim.diagnostics.diagnose(parsed, fingerprint)
        if parsed.wants_diagnostics:
            self.sim.diagnostics.remember(message_id, fingerprint)
        reply = plan_reply(
            self.sim.scenarios.select(parsed.messages),
            parsed.messages,
            seed=prompt.message_digests[-1],
            max_tokens=parsed.max_tokens or 0,
        )
        usage = {**cache_usage.as_usage(), "output_tokens": reply.output_tokens}
        record.message_id, record.usage, record.diagnostics = message_id, usage, diagnostics
        log.debug(
            "sim.reply id=%s model=%s stream=%s read=%d created=%d input=%d",
            message_id,
            parsed.model,
            parsed.stream,
            cache_usage.cache_read_input_tokens,
            cache_usage.cache_creation_input_tokens,
            cache_usage.input_tokens,
        )
        envelope: dict[str, object] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": parsed.model,
            "diagnostics": diagnostics,
        }
        drop = fault is not None and fault.kind == "drop"
        if parsed.stream:
            interruption: Interruption | None = (
                "drop" if drop else "error" if fault is not None else None
            )
            events = stream_message(
                envelope,
                reply,
                usage,
                token_rate=reply.token_rate or self.sim.config.token_rate,
                interruption=interruption,
            )
            return StreamingResponse(
                _until_disconnected(request, events),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        message = {
            **envelope,
            "content": reply.content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        return _DroppedResponse(message) if drop else JSONResponse(message)

    async def count_tokens(self, request: Request, request_id: str) -> Response:
        body = await _json_body(request)
        record = Recorded(request_id, request.url.path, body)
        try:
            _, prompt, _ = self._prepare(request, body, count_only=True)
            record.input_tokens = prompt.total_tokens
            return JSONResponse({"input_tokens": prompt.total_tokens})
        except ApiError as error:
            record.status = error.status
            raise
        finally:
            self.sim.requests.add(record)

    async def models(self, request: Request, request_id: str) -> Response:
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": "2026-01-01T00:00:00Z",
                "lifecycle": "active",
            }
            for model in CATALOG
        ]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    # -- controls -------------------------------------------------------------------

    async def faults(self, request: Request, request_id: str) -> Response:
        if request.method == "POST":
            fault = Fault.from_json(await _json_body(request))
            self.sim.faults.arm(fault)
            log.info("sim.fault_armed kind=%s count=%d", fault.kind, fault.count)
        elif request.method == "DELETE":
            self.sim.faults.clear()
        return JSONResponse({"faults": [f.to_json() for f in self.sim.faults.pending()]})

    async def recorded(self, request: Request, request_id: str) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"cleared": self.sim.requests.clear()})
        return JSONResponse({"requests": self.sim.requests.to_json()})

    async def clock(self, request: Request, request_id: str) -> Response:
        body = await _json_body(request)
        seconds = body.get("advance_s") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise InvalidRequest("advance_s: Input should be a number of seconds, at least 0")
        self.sim.clock.advance(float(seconds))
        return JSONResponse({"now": self.sim.clock()})


def _refuse(fault: Fault, stream: bool) -> None:
    """Raise the error response a fault stands for, if it is one that refuses outright."""
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = retry_after_header(fault.retry_after)
    if fault.kind == "rate_limit":
        raise RateLimited("Number of request tokens has exceeded your rate limit", headers=headers)
    if fault.kind == "overloaded" or (fault.kind == "midstream_error" and not stream):
        raise Overloaded("Overloaded", headers=headers)


class _DroppedResponse(Response):
    """Starts a JSON response, sends part of it, then has the server cut the connection."""

    def __init__(self, content: object) -> None:
        super().__init__(json.dumps(content).encode(), media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise SimulatedDrop


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        body: object = json.loads(raw)
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON") from None
    return body


def _error_response(error: ApiError, request_id: str) -> Response:
    return JSONResponse(error.body(request_id), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405s, in the API's error shape."""
    assert isinstance(exc, HTTPException)
    request_id = _new_id("req_")
    error: ApiError = (
        MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        if exc.status_code == 405
        else NotFound(f"{request.method} {request.url.path}: not found")
    )
    response = _error_response(error, request_id)
    response.headers["request-id"] = request_id
    return response


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


async def _until_disconnected(
    request: Request, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """Stop streaming once the client has gone (a cancelled call), as the API does;
    the server may not tell the body's generator by itself."""
    async with aclosing(events):  # type: ignore[type-var]
        async for chunk in events:
            if await request.is_disconnected():
                return
            yield chunk
