"""`LoopbackGuard`: the checks every request passes before the app sees it.

A nudge is a command to an agent that runs tools, so every HTTP request and every
websocket handshake must carry the daemon's token and name a loopback Host with the
daemon's port (DNS rebinding). A request with an Origin (only browsers send one) is
refused unless the origin is on the allow-list: browsers do not apply the same-origin
policy to websockets, and a page could otherwise send "simple" POSTs blind. HTTP bodies
are size-limited.

CORS for the allow-list: a browser's preflight (OPTIONS with Origin and
Access-Control-Request-Method) from an allowed origin is answered here, without a
token, since browsers never send credentials on a preflight; it says which methods and
headers the real request may use. The real request still needs the token, and its
answer (a refusal too, so the page can read why) names the origin it may be read by.

Starlette middleware does not run for websocket scopes, so this is a plain ASGI
wrapper, and a refused websocket is refused before `accept()`: with a real HTTP
response (401 or 403) through the `websocket.http.response` extension where the
server offers it (uvicorn does), else with a close (1008, which servers turn into 403).
Refusals are logged with their reason and peer, never with the token.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from protocol.commands import ErrorCode
from protocol.websocket import TOKEN_SUBPROTOCOL_PREFIX

log = logging.getLogger("steer.guard")

MAX_BODY_BYTES = 256 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
#: The close code for a refused websocket when the server has no HTTP response extension.
CLOSE_POLICY = 1008

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: (HTTP status, error code, message)
Refusal = tuple[int, ErrorCode, str]

_UNAUTHORIZED: Refusal = (401, "unauthorized", "missing or wrong token (see STEER_HOME/token)")
_FORBIDDEN_HOST: Refusal = (
    403,
    "forbidden",
    "the Host header must name this daemon on loopback",
)
_FORBIDDEN_ORIGIN: Refusal = (403, "forbidden", "this Origin is not in STEER_ALLOWED_ORIGINS")

#: What an allowed origin's preflight is told (the API's methods; the token and JSON).
CORS_METHODS = b"GET, POST"
CORS_HEADERS = b"Authorization, Content-Type"
#: How long a browser may reuse a preflight's answer, in seconds.
CORS_MAX_AGE = b"600"
#: The route that takes a session's export (`daemon.transfer`), and its own limit.
IMPORT_PATH = "/v1/sessions/import"
MAX_IMPORT_BYTES = 64 * 1024 * 1024


class LoopbackGuard:
    """Token, Host and Origin checks for every request; CORS and body size for HTTP."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        port: int,
        allowed_origins: frozenset[str] = frozenset(),
    ) -> None:
        self._app = app
        self._token = token.encode()
        self._hosts = {f"{host}:{port}".encode() for host in LOOPBACK_HOSTS}
        self._origins = {origin.encode() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match scope["type"]:
            case "http":
                await self._http(scope, receive, send)
            case "websocket":
                await self._websocket(scope, receive, send)
            case _:
                await self._app(scope, receive, send)

    # -- HTTP -------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        refusal = self._host_refusal(headers) or self._origin_refusal(headers)
        origin = _single(headers, b"origin") if refusal is None else None
        if origin is not None:
            if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
                await _preflight(send, origin)
                return
            send = _allow_origin(send, origin)
        refusal = refusal or self._token_refusal(headers, None)
        limit = body_limit(scope)
        too_large: Refusal = (413, "too_large", f"request bodies are limited to {limit} bytes")
        if refusal is None and b"content-length" in headers:
            length = _single(headers, b"content-length") or b""
            if not length.isdigit() or int(length) > limit:
                refusal = too_large
        elif refusal is None and b"transfer-encoding" in headers:
            # No length up front: read the body here, up to the limit, and replay it.
            body = await _read_body(receive, limit)
            if body is None:
                refusal = too_large
            else:
                receive = _replay(body, receive)
        if refusal is not None:
            _log_refusal(scope, refusal)
            status, kind, message = refusal
            response = JSONResponse({"error": {"code": kind, "message": message}}, status)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    # -- websocket --------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        offered: list[str] = list(scope.get("subprotocols") or [])
        tokens = [p for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
        refusal = (
            self._host_refusal(headers)
            or self._origin_refusal(headers)
            or self._token_refusal(headers, tokens)
        )
        if refusal is not None:
            _log_refusal(scope, refusal)
            await _refuse_websocket(scope, receive, send, refusal)
            return
        # The app never sees the token, so it cannot echo it back as the subprotocol.
        inner = dict(scope)
        inner["subprotocols"] = [p for p in offered if p not in tokens]
        await self._app(inner, receive, send)

    # -- checks -----------------------------------------------------------------

    def _host_refusal(self, headers: dict[bytes, list[bytes]]) -> Refusal | None:
        host = _single(headers, b"host")
        return None if host is not None and host in self._hosts else _FORBIDDEN_HOST

    def _origin_refusal(self, headers: dict[bytes, list[bytes]]) -> Refusal | None:
        if b"origin" not in headers:
            return None  # a native client: browsers always send Origin
        origin = _single(headers, b"origin")
        return None if origin is not None and origin in self._origins else _FORBIDDEN_ORIGIN

    def _token_refusal(
        self, headers: dict[bytes, list[bytes]], subprotocols: list[str] | None
    ) -> Refusal | None:
        """The token from `Authorization: Bearer`, or else (websockets) from the one
        offered `steer.token.<token>` subprotocol."""
        if b"authorization" in headers:
            auth = _single(headers, b"authorization") or b""
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer":
                return _UNAUTHORIZED
            given = given.strip()
        elif subprotocols is not None and len(subprotocols) == 1:
            given = subprotocols[0].removeprefix(TOKEN_SUBPROTOCOL_PREFIX).encode()
        else:
            return _UNAUTHORIZED
        return None if hmac.compare_digest(given, self._token) else _UNAUTHORIZED


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for name, value in scope["headers"]:
        headers.setdefault(bytes(name).lower(), []).append(bytes(value))
    return headers


def _single(headers: dict[bytes, list[bytes]], name: bytes) -> bytes | None:
    """The header's value if it was sent exactly once (a repeat is refused)."""
    values = headers.get(name, [])
    return values[0] if len(values) == 1 else None


def body_limit(scope: Scope) -> int:
    """The largest body the request may have: an import takes a whole export."""
    if scope["method"] == "POST" and scope.get("path") == IMPORT_PATH:
        return MAX_IMPORT_BYTES
    return MAX_BODY_BYTES


async def _read_body(receive: Receive, limit: int) -> list[Message] | None:
    """The request's messages up to the end of its body, or None past the limit."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _preflight(send: Send, origin: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", CORS_METHODS),
                (b"access-control-allow-headers", CORS_HEADERS),
                (b"access-control-max-age", CORS_MAX_AGE),
                (b"vary", b"Origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _allow_origin(send: Send, origin: bytes) -> Send:
    """`send`, with the answer readable by the page at `origin` (an allowed one)."""

    async def sent(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sent


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    status, kind, message = refusal
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return  # the client went away already
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = json.dumps({"error": {"code": kind, "message": message}}).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": kind})


def _log_refusal(scope: Scope, refusal: Refusal) -> None:
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "?"
    log.warning(
        "guard.refused kind=%s status=%d code=%s reason=%r peer=%s path=%r",
        scope["type"],
        refusal[0],
        refusal[1],
        refusal[2],
        peer,
        scope.get("path", ""),
    )
