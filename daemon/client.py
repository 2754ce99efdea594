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

from daemon.paths import DAEMON_FILE, TOKEN_FILE

NOT_RUNNING = "the daemon is not running (start it with `steer daemon`)"


class ClientError(Exception):
    """A failure to show the user as one line."""


class DaemonClient:
    def __init__(self, home: Path, timeout: float = 30.0) -> None:
        try:
            info = json.loads((home / DAEMON_FILE).read_text())
            token = (home / TOKEN_FILE).read_text().strip()
        except (OSError, ValueError) as exc:
            raise ClientError(f"{NOT_RUNNING}; looked in {home}") from exc
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

    def lines(self, path: str, **params: Any) -> Iterator[str]:
        """Stream an NDJSON endpoint line by line (keep-alive blank lines skipped)."""
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                _raise_for(response, read=True)
                for line in response.iter_lines():
                    if line.strip():
                        yield line
        except httpx.ConnectError as exc:
            raise ClientError(f"{NOT_RUNNING} at {self.url}: {exc}") from exc
        except httpx.TransportError as exc:
            raise ClientError(f"lost the daemon's event stream: {exc}") from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"{NOT_RUNNING} at {self.url}: {exc}") from exc
        _raise_for(response)
        return response.json()


def _raise_for(response: httpx.Response, *, read: bool = False) -> None:
    if response.is_success:
        return
    if read:
        response.read()
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"daemon answered {response.status_code}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        raise ClientError(str(error.get("message")))
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in detail)
    raise ClientError(str(detail))
