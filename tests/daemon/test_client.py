"""The CLI's standard-library HTTP client (`daemon.client`) against a real HTTP server on
loopback that answers as the daemon does, or breaks off as a dying daemon would:
chunked NDJSON streams cut anywhere, refusals, an unavailable Redis, no server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from daemon.client import EXIT_REFUSED, EXIT_UNREACHABLE, ClientError, DaemonClient
from daemon.home_lock import HomeLock
from daemon.paths import DAEMON_FILE, TOKEN_FILE

TOKEN = "t0ken"
#: A frame longer than one read of the stream, to be put together from its pieces.
LONG = json.dumps({"seq": 3, "text": "x" * 200_000})

Reply = Callable[[BaseHTTPRequestHandler], None]


def chunked(handler: BaseHTTPRequestHandler, pieces: list[bytes], *, end: bool = True) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for piece in pieces:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.flush()
    if end:
        handler.wfile.write(b"0\r\n\r\n")


def answer(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


ROUTES: dict[str, Reply] = {
    # Lines split across chunks, a keep-alive blank line, a line longer than a read.
    "/stream": lambda h: chunked(
        h, [b'{"seq": 1}\n{"se', b'q": 2}\n', b"\n", LONG[:70_000].encode(), LONG[70_000:].encode()]
    ),
    # The daemon dies mid-stream: no closing chunk.
    "/cut": lambda h: chunked(h, [b'{"seq": 1}\n{"seq"'], end=False),
    "/refused": lambda h: answer(h, 404, {"error": {"code": "unknown_session", "message": "nope"}}),
    "/redis-down": lambda h: answer(h, 503, {"error": {"code": "x", "message": "Redis is down"}}),
    "/invalid": lambda h: answer(h, 422, {"detail": [{"msg": "bad"}]}),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer(self, 200, {"path": self.path, "body": json.loads(body)})

    def _reply(self) -> None:
        if self.headers["Authorization"] != f"Bearer {TOKEN}":
            answer(self, 401, {"error": {"code": "unauthorized", "message": "no token"}})
            return
        path, _, query = self.path.partition("?")
        if path == "/echo":
            answer(self, 200, {"query": query})
        else:
            ROUTES[path](self)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A STEER_HOME whose daemon is this test's HTTP server, its lock held."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (tmp_path / DAEMON_FILE).write_text(
        json.dumps({"url": f"http://127.0.0.1:{server.server_port}"})
    )
    (tmp_path / TOKEN_FILE).write_text(TOKEN + "\n")
    lock = HomeLock(tmp_path)
    lock.acquire()
    try:
        yield tmp_path
    finally:
        lock.release()
        server.shutdown()
        server.server_close()
        thread.join()


def test_get_post_and_query_parameters(home: Path) -> None:
    client = DaemonClient(home)
    assert client.get("/echo", archived=True, memory=False, since=3) == {
        "query": "archived=true&memory=false&since=3"
    }
    assert client.post("/v1/x", {"author": "ann"}) == {"path": "/v1/x", "body": {"author": "ann"}}


def test_lines_are_put_together_across_chunks_and_blank_lines_skipped(home: Path) -> None:
    assert list(DaemonClient(home).lines("/stream")) == ['{"seq": 1}', '{"seq": 2}', LONG]


def test_a_stream_cut_off_is_an_error_not_an_end(home: Path) -> None:
    got = []
    with pytest.raises(ClientError) as caught:
        for line in DaemonClient(home).lines("/cut"):
            got.append(line)
    assert got == ['{"seq": 1}']
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert str(caught.value).startswith("lost the daemon's event stream")


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/refused", EXIT_REFUSED, "nope"),
        ("/redis-down", EXIT_UNREACHABLE, "Redis is down"),
        ("/invalid", EXIT_REFUSED, "daemon answered 422: [{'msg': 'bad'}]"),
    ],
)
def test_refusals_keep_the_daemons_message_and_exit_code(
    home: Path, path: str, code: int, message: str
) -> None:
    for call in (
        lambda: DaemonClient(home).get(path),
        lambda: list(DaemonClient(home).lines(path)),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert (caught.value.exit_code, str(caught.value)) == (code, message)


def test_no_daemon_listening_is_unreachable(home: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (home / DAEMON_FILE).write_text(json.dumps({"url": f"http://127.0.0.1:{port}"}))
    for call in (lambda c: c.get("/echo"), lambda c: list(c.lines("/stream"))):
        with pytest.raises(ClientError) as caught:
            call(DaemonClient(home))
        assert caught.value.exit_code == EXIT_UNREACHABLE
        assert str(caught.value).startswith(
            "the daemon is not running (start it with `steer daemon`)"
        )
