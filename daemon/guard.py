"""`LoopbackGuard`: the checks every request passes before the app sees it.

A nudge is a command to an agent that runs tools, so every HTTP request must carry
the daemon's token and name a loopback Host with the daemon's port (DNS rebinding),
and bodies are size-limited. Starlette middleware does not run for websocket scopes,
so this is a plain ASGI wrapper.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

MAX_BODY_BYTES = 256 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LoopbackGuard:
    """Token, Host and size checks for every HTTP request, before the app sees it."""

    def __init__(self, app: ASGIApp, *, token: str, port: int) -> None:
        self._app = app
        self._token = token.encode()
        self._hosts = {f"{host}:{port}".encode() for host in LOOPBACK_HOSTS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(headers)
        if refusal is not None:
            status, kind, message = refusal
            response = JSONResponse({"error": {"type": kind, "message": message}}, status)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        if headers.get(b"host", b"") not in self._hosts:
            return 403, "forbidden_host", "the Host header must name this daemon on loopback"
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
            return 401, "unauthorized", "missing or wrong token (see STEER_HOME/token)"
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            return 413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes"
        return None
