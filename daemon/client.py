"""A small synchronous client of the daemon's HTTP API, for the `steer` CLI.

It finds the daemon through STEER_HOME (`daemon.json` for the address, `token` for
the bearer token) and turns every failure into a one-line `ClientError`.

It speaks HTTP/1.1 over a plain socket (`daemon.loopback_http`), one connection per
request: httpx would cost every command about 150 ms of import, and even the standard
library's `http.client` 30 ms, where the whole of `steer ls` has 150 ms.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from daemon import loopback_http
from daemon.paths import DAEMON_FILE, TOKEN_FILE

# `typing` costs 4 ms of start-up; mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

NOT_RUNNING = "the daemon is not running (start it with `steer daemon`)"


EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2


class ClientError(Exception):
    """A failure to show the user as one line, with the exit code it maps to: 1 the
    daemon refused, 2 the daemon (or its Redis) cannot be reached."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DaemonClient:
    def __init__(self, home: Path, timeout: float = 30.0) -> None:
        from daemon.home_lock import daemon_running

        try:
            info = json.loads((home / DAEMON_FILE).read_text())
            token = (home / TOKEN_FILE).read_text().strip()
        except (OSError, ValueError) as exc:
            raise ClientError(f"{NOT_RUNNING}; looked in {home}", EXIT_UNREACHABLE) from exc
        if not daemon_running(home):  # a daemon.json left by a daemon that was killed
            raise ClientError(
                f"{NOT_RUNNING}; {home / DAEMON_FILE} is stale (pid {info.get('pid')})",
                EXIT_UNREACHABLE,
            )
        self.url: str = info["url"]
        address = urlsplit(self.url)
        self._host = address.hostname or "127.0.0.1"
        self._port = address.port or 80
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", _with_query(path, params), timeout=self._timeout)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        content = json.dumps(body or {}).encode()
        return self._call("POST", path, content, "application/json", timeout=self._timeout)

    def post_content(self, path: str, content: bytes, content_type: str) -> Any:
        """POST a body as it is (an export to import), without a time limit."""
        return self._call("POST", path, content, content_type, timeout=None)

    def lines(self, path: str, **params: Any) -> Iterator[str]:
        """Stream an NDJSON endpoint line by line (keep-alive blank lines skipped)."""
        response = self._request("GET", _with_query(path, params), timeout=None)
        try:
            _raise_for(response)
            yield from _lines(response)
        except OSError as exc:
            raise ClientError(f"lost the daemon's event stream: {exc}", EXIT_UNREACHABLE) from exc
        finally:
            response.close()

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        *,
        timeout: float | None,
    ) -> Any:
        response = self._request(method, path, body, content_type, timeout=timeout)
        try:
            _raise_for(response)
            return json.loads(response.read())
        except OSError as exc:
            raise ClientError(f"{NOT_RUNNING} at {self.url}: {exc}", EXIT_UNREACHABLE) from exc
        finally:
            response.close()

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        *,
        timeout: float | None,
    ) -> loopback_http.Response:
        """Send one request on a connection of its own; the response, headers read."""
        headers = self._headers
        if content_type is not None:
            headers = headers | {"Content-Type": content_type}
        try:
            return loopback_http.request(
                self._host, self._port, method, path, headers, body, timeout=timeout
            )
        except OSError as exc:
            raise ClientError(f"{NOT_RUNNING} at {self.url}: {exc}", EXIT_UNREACHABLE) from exc


def _lines(response: loopback_http.Response) -> Iterator[str]:
    """The response's non-blank lines as they arrive, a long line's pieces gathered in a
    list (no quadratic copying)."""
    pending: list[bytes] = []
    for piece in response.body():
        first, *more = piece.split(b"\n")
        pending.append(first)
        if not more:
            continue
        *complete, last = [b"".join(pending), *more]
        pending = [last]
        for line in complete:
            if line.strip():
                yield line.decode()
    if (rest := b"".join(pending)).strip():
        yield rest.decode()


def _with_query(path: str, params: dict[str, Any]) -> str:
    """`path?name=value...`, booleans as `true`/`false` as the API reads them."""
    pairs = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _raise_for(response: loopback_http.Response) -> None:
    """A refusal as `ClientError`: the daemon answers `{"error": {"code", "message"}}`."""
    status = response.status
    if 200 <= status < 300:
        return
    code = EXIT_UNREACHABLE if status == 503 else EXIT_REFUSED
    try:
        body = json.loads(response.read())
    except ValueError:
        raise ClientError(f"daemon answered {status}", code) from None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        raise ClientError(str(error.get("message")), code)
    detail = body.get("detail") if isinstance(body, dict) else body
    raise ClientError(f"daemon answered {status}: {detail}", code)
