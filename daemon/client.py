"""A small synchronous client of the daemon's HTTP API, for the `steer` CLI.

It finds the daemon through STEER_HOME (`daemon.json` for the address, `token` for
the bearer token) and turns every failure into a one-line `ClientError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from daemon.home_lock import daemon_running
from daemon.paths import DAEMON_FILE, TOKEN_FILE

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
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, json=body or {})

    def post_content(self, path: str, content: bytes, content_type: str) -> Any:
        """POST a body as it is (an export to import), without a time limit."""
        headers = {"Content-Type": content_type}
        return self._call("POST", path, content=content, headers=headers, timeout=None)

    def lines(self, path: str, **params: Any) -> Iterator[str]:
        """Stream an NDJSON endpoint line by line (keep-alive blank lines skipped)."""
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                _raise_for(response, read=True)
                for line in response.iter_lines():
                    if line.strip():
                        yield line
        except httpx.ConnectError as exc:
            raise ClientError(f"{NOT_RUNNING} at {self.url}: {exc}", EXIT_UNREACHABLE) from exc
        except httpx.TransportError as exc:
            raise ClientError(f"lost the daemon's event stream: {exc}", EXIT_UNREACHABLE) from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"{NOT_RUNNING} at {self.url}: {exc}", EXIT_UNREACHABLE) from exc
        _raise_for(response)
        return response.json()


def _raise_for(response: httpx.Response, *, read: bool = False) -> None:
    """A refusal as `ClientError`: the daemon answers `{"error": {"code", "message"}}`."""
    if response.is_success:
        return
    if read:
        response.read()
    code = EXIT_UNREACHABLE if response.status_code == 503 else EXIT_REFUSED
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"daemon answered {response.status_code}", code) from None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        raise ClientError(str(error.get("message")), code)
    detail = body.get("detail") if isinstance(body, dict) else body
    raise ClientError(f"daemon answered {response.status_code}: {detail}", code)
