"""One HTTP/1.1 exchange over a plain socket, for the `steer` CLI and its daemon on
loopback: a request with `Connection: close`, then the response read as it arrives
(Content-Length, chunked, or up to the close).

On `_socket` alone, as `daemon.resp` is for Redis: `http.client` would cost every
command that reaches the daemon about 30 ms of start-up (the email parser for its
headers, and ssl, which loads OpenSSL), a fifth of what `steer ls` may take in all.
The daemon speaks plain HTTP on loopback, so there is no TLS to do. A response that
breaks off (the daemon died mid-stream) or is not HTTP raises `ConnectionError`.
"""

from __future__ import annotations

import _socket

from daemon.resp import tcp_connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

#: How much one read asks for.
READ_BYTES = 64 * 1024
#: Status line and headers, at most: a daemon's are a few hundred bytes.
MAX_HEAD_BYTES = 64 * 1024


class Response:
    """A response whose status and headers are read; its body is read on demand, and
    `close` ends the connection."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        status_line, *header_lines = self._head().split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise ConnectionError(f"not an HTTP response: {bytes(status_line[:80])!r}")
        self.status = int(code)
        self.headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def close(self) -> None:
        self._sock.close()

    def read(self) -> bytes:
        """The whole body."""
        return b"".join(self.body())

    def body(self) -> Iterator[bytes]:
        """The body in pieces as they arrive: each chunk of a chunked body, else each read."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            yield from self._chunks()
        elif (length := self.headers.get("content-length")) is not None:
            if not length.isdigit():
                raise ConnectionError(f"bad Content-Length {length!r}")
            yield from self._counted(int(length))
        else:  # the body ends with the connection
            if self._buffer:
                yield bytes(self._buffer)
                self._buffer.clear()
            while data := self._sock.recv(READ_BYTES):
                yield data

    def _head(self) -> bytes:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ConnectionError("the response's headers are too large")
            self._fill()
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        return head

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size_line = self._line().partition(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ConnectionError(f"bad chunk size {bytes(size_line[:20])!r}") from None
            if size == 0:
                while self._line():  # trailers, up to the blank line
                    pass
                return
            yield from self._counted(size)
            if self._line():
                raise ConnectionError("a chunk runs past its size")

    def _counted(self, size: int) -> Iterator[bytes]:
        while size > 0:
            if not self._buffer:
                self._fill()
            piece = bytes(self._buffer[:size])
            del self._buffer[: len(piece)]
            size -= len(piece)
            yield piece

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ConnectionError("a chunk header is too long")
            self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _fill(self) -> None:
        data = self._sock.recv(READ_BYTES)
        if not data:
            raise ConnectionError("the connection closed mid-response")
        self._buffer += data


def request(
    host: str,
    port: int,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes | None = None,
    *,
    timeout: float | None,
) -> Response:
    """Send one request; the response, its headers read (the caller closes it).
    `target` is the path and query, already quoted; `timeout` applies to each connect,
    send and receive (None: wait for ever, for a followed stream)."""
    sock = tcp_connect(host, port, timeout)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Response(sock)
    except BaseException:
        sock.close()
        raise
