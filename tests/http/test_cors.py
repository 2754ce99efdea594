"""CORS against a real `steer daemon` with STEER_ALLOWED_ORIGINS, the way a browser (a
VS Code webview, say) calls it: a preflight without the token, then the real request
with it. An allowed origin gets through both; any other origin fails both, with no
CORS header to let the page read anything."""

from __future__ import annotations

import json

import httpx
import pytest

from daemon.paths import DAEMON_FILE, TOKEN_FILE
from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon

ALLOWED = "vscode-webview://1a2b3c"
OTHER_ORIGINS = [
    "https://evil.example",
    "vscode-webview://1a2b3c.evil.example",
    "vscode-webview://other",
    "null",
]


def preflight(url: str, origin: str, method: str = "POST", **headers: str) -> httpx.Response:
    """What a browser sends before a request with a token and a JSON body."""
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
            **headers,
        },
    )


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture
def daemon(start_steer_daemon: StartSteerDaemon) -> DaemonProcess:
    return start_steer_daemon(STEER_ALLOWED_ORIGINS=f"http://localhost:5173, {ALLOWED}")


def address(daemon: DaemonProcess) -> tuple[str, dict[str, str]]:
    url: str = json.loads((daemon.home / DAEMON_FILE).read_text())["url"]
    token = (daemon.home / TOKEN_FILE).read_text().strip()
    return url, {"Authorization": f"Bearer {token}"}


def test_an_allowed_origin_preflights_without_the_token_then_calls_with_it(
    daemon: DaemonProcess,
) -> None:
    url, auth = address(daemon)
    for path in ("/v1/sessions", "/v1/health", "/v1/sessions/s-any/nudges"):
        answer = preflight(url + path, ALLOWED)
        assert answer.status_code == 204, answer.text
        assert answer.content == b""
        assert answer.headers["access-control-allow-origin"] == ALLOWED
        assert answer.headers["vary"] == "Origin"
        methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST"} <= methods
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type"} <= {h.strip() for h in allowed.split(",")}
        assert int(answer.headers["access-control-max-age"]) > 0

    origin = {"Origin": ALLOWED}
    listed = httpx.get(f"{url}/v1/sessions", headers=auth | origin)
    assert listed.status_code == 200, listed.text
    assert listed.headers["access-control-allow-origin"] == ALLOWED
    assert listed.headers["vary"] == "Origin"
    body = {"task": "[scenario:short] from a webview", "workdir": str(daemon.home)}
    started = httpx.post(f"{url}/v1/sessions", json=body, headers=auth | origin)
    assert started.status_code == 201, started.text
    assert started.headers["access-control-allow-origin"] == ALLOWED
    assert daemon.cli("show", started.json()["id"]).returncode == 0

    # The real request still needs the token; its refusal is readable by the page.
    anonymous = httpx.get(f"{url}/v1/sessions", headers=origin)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert anonymous.headers["access-control-allow-origin"] == ALLOWED
    # A plain OPTIONS (not a preflight) is an ordinary request: it needs the token too.
    assert httpx.options(f"{url}/v1/sessions", headers=origin).status_code == 401


def test_any_other_origin_fails_the_preflight_and_the_request(daemon: DaemonProcess) -> None:
    url, auth = address(daemon)
    body = {"task": "[scenario:short] blind", "workdir": str(daemon.home)}
    for origin in OTHER_ORIGINS:
        answer = preflight(f"{url}/v1/sessions", origin)
        assert answer.status_code == 403, origin
        assert answer.json()["error"]["code"] == "forbidden"
        assert cors_headers(answer) == {}
        headers = auth | {"Origin": origin}
        for response in (
            httpx.get(f"{url}/v1/sessions", headers=headers),
            httpx.post(f"{url}/v1/sessions", json=body, headers=headers),
        ):
            assert response.status_code == 403, (origin, response.text)
            assert cors_headers(response) == {}
    assert daemon.cli("ls", "--json").stdout.strip() == ""  # nothing was started

    # A preflight still needs a loopback Host (DNS rebinding), and one Origin.
    port = url.rsplit(":", 1)[1]
    answer = preflight(f"{url}/v1/sessions", ALLOWED, Host=f"evil.example:{port}")
    assert answer.status_code == 403
    assert cors_headers(answer) == {}
    twice = httpx.options(
        f"{url}/v1/sessions",
        headers=[
            ("Origin", ALLOWED),
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    assert twice.status_code == 403
    assert cors_headers(twice) == {}


def test_with_no_allowed_origins_every_origin_is_refused(
    start_steer_daemon: StartSteerDaemon,
) -> None:
    daemon = start_steer_daemon()
    url, auth = address(daemon)
    assert preflight(f"{url}/v1/health", url).status_code == 403
    assert httpx.get(f"{url}/v1/health", headers=auth | {"Origin": url}).status_code == 403
    assert httpx.get(f"{url}/v1/health", headers=auth).status_code == 200  # native: no Origin
