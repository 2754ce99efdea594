"""A tiny synchronous Redis client: RESP2 over a raw socket.

Owns: turning a Redis URL into an authenticated connection (TCP, TLS or unix socket,
with AUTH and SELECT), sending commands as arrays of bulk strings, and parsing RESP2
replies. Bulk strings come back as `str` (UTF-8, invalid bytes replaced): steer only
stores text.

It exists because the `nudge` command must start in a few milliseconds and importing
redis-py costs over 100 ms. So this module imports only cheap stdlib modules (`ssl`
only for `rediss://`); the daemon itself uses redis-py.

URLs: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS; a private CA
via `?ssl_ca_certs=/path/ca.pem`), `unix://[[user]:password@]/path/to.sock[?db=N]`.
After a timeout or a lost connection a `Connection` is unusable: close it.
"""

from __future__ import annotations

import _socket  # not `socket`: its enums and wrappers cost ~3 ms of start-up

DEFAULT_PORT = 6379
READ_SIZE = 64 * 1024


class RespError(Exception):
    """An error reply from Redis, e.g. `WRONGPASS ...`, `NOPERM ...`, `WRONGTYPE ...`."""


#: A parsed reply. Error replies nested in arrays stay `RespError` values; a top-level
#: error reply is raised.
Reply = str | int | list["Reply"] | RespError | None


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print or log."""
    scheme, sep, rest = url.partition("://")
    # Split at the last "@" of the whole URL, not of the parsed authority: a password
    # with an unescaped "/", "?" or "#" would otherwise leak. Masking too much is safe.
    userinfo, at, tail = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{tail}"


def encode_command(args: tuple[str | int, ...]) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    """One connection to Redis; one command at a time."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0

    def settimeout(self, timeout: float | None) -> None:
        """Seconds to wait for each reply (None: forever); raises TimeoutError past it."""
        self._sock.settimeout(timeout)

    def execute(self, *args: str | int) -> Reply:
        """Send one command and return its reply; an error reply raises `RespError`."""
        self._sock.sendall(encode_command(args))
        reply = self._read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> Reply:
        line = self._take_line()
        kind, body = line[:1], line[1:]
        if kind == b"+":
            return body.decode(errors="replace")
        if kind == b"-":
            return RespError(body.decode(errors="replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            return None if size < 0 else self._take(size).decode(errors="replace")
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ConnectionError(f"not a RESP2 reply: {line[:32]!r}")

    def _take_line(self) -> bytes:
        while (end := self._buf.find(b"\r\n", self._pos)) < 0:
            self._fill()
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return line

    def _take(self, size: int) -> bytes:
        """A bulk string's SIZE bytes and the CRLF after them."""
        while len(self._buf) - self._pos < size + 2:
            self._fill()
        data = bytes(self._buf[self._pos : self._pos + size])
        self._pos += size + 2
        return data

    def _fill(self) -> None:
        del self._buf[: self._pos]
        self._pos = 0
        chunk = self._sock.recv(READ_SIZE)
        if not chunk:
            raise ConnectionError("connection closed by Redis")
        self._buf += chunk


class _Url:
    """The parts of a Redis URL, split the way `urllib.parse.urlsplit` splits them
    (without importing it: `urllib.parse` brings `re` and costs milliseconds)."""

    def __init__(self, url: str) -> None:
        scheme, sep, rest = url.partition("://")
        self.scheme = scheme.lower() if sep else ""
        rest = rest if sep else url
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        self.netloc, tail = rest[:end], rest[end:]
        tail = tail.partition("#")[0]
        self.path, _, self.query = tail.partition("?")
        userinfo, at, self.hostport = self.netloc.rpartition("@")
        self.userinfo = userinfo if at else None
        user, colon, password = (userinfo if at else "").partition(":")
        self.username = _unquote(user)
        self.password = _unquote(password) if at and colon else None

    @property
    def host(self) -> str:
        if self.hostport.startswith("["):
            return self.hostport[1:].partition("]")[0]
        return self.hostport.rpartition(":")[0] if ":" in self.hostport else self.hostport

    @property
    def port(self) -> int | None:
        tail = self.hostport.rpartition("]")[2] if self.hostport.startswith("[") else self.hostport
        _, colon, port = tail.rpartition(":")
        if not colon or not port:
            return None
        # Never quote the bad port: it may be part of a password with an unescaped "/".
        if not port.isdigit() or int(port) > 65535:
            raise ValueError("malformed URL: bad port")
        return int(port)

    def param(self, name: str) -> str | None:
        for pair in self.query.split("&"):
            key, _, value = pair.partition("=")
            if _unquote(key.replace("+", " ")) == name:
                return _unquote(value.replace("+", " "))
        return None


def _unquote(text: str) -> str:
    """Percent-decoding, as `urllib.parse.unquote` does it for UTF-8."""
    if "%" not in text:
        return text
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "%" and _is_hex(text[i + 1 : i + 3]):
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += text[i].encode()
            i += 1
    return out.decode(errors="replace")


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


def with_address(url: str, address: str) -> str:
    """The URL with its host and port replaced by `address` ("host:port"), keeping the
    scheme, credentials, database and query: how a cluster redirection is followed."""
    parts = _Url(url)
    netloc = f"{parts.userinfo}@{address}" if parts.userinfo is not None else address
    return url.replace(parts.netloc, netloc, 1) if parts.netloc else url


def connect(url: str, timeout: float = 5.0) -> Connection:
    """Connect, authenticate and select the database the URL names.

    Raises ValueError for a malformed URL, OSError when Redis cannot be reached (or
    the connection breaks), RespError when Redis refuses AUTH or SELECT.
    """
    parts = _Url(url)
    if parts.scheme in ("redis", "rediss"):
        host = parts.host or "127.0.0.1"
        port = parts.port or DEFAULT_PORT
        sock = tcp_connect(host, port, timeout)
        if parts.scheme == "rediss":
            sock = _tls_wrap(sock, host, parts.param("ssl_ca_certs"), timeout)
        db = parts.path.strip("/") or "0"
    elif parts.scheme == "unix":
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(parts.path)
        except BaseException:
            sock.close()
            raise
        db = parts.param("db") or "0"
    else:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (redis, rediss or unix)")
    conn = Connection(sock)
    try:
        if not db.isdigit():
            raise ValueError(f"database must be a number, not {db!r}")
        username = parts.username
        if parts.password is not None:
            password = parts.password
            conn.execute("AUTH", *((username, password) if username else (password,)))
        if db != "0":
            conn.execute("SELECT", db)
    except BaseException:
        conn.close()
        raise
    return conn


def tcp_connect(host: str, port: int, timeout: float | None) -> _socket.socket:
    """`socket.create_connection` without the `socket` module (its enums and wrappers
    cost start-up), and with TCP_NODELAY; `steer`'s HTTP client connects with it too."""
    error: OSError = OSError(f"no address for {host}")
    # An ASCII host as bytes: as text, getaddrinfo imports the idna codec (~2 ms).
    name = host.encode() if host.isascii() else host
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        # Requests are one small write each; Nagle would only add latency.
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        return sock
    raise error


def _tls_wrap(
    sock: _socket.socket, host: str, cafile: str | None, timeout: float
) -> _socket.socket:
    import socket  # ~10 ms with ssl: only for TLS
    import ssl

    plain = socket.socket(fileno=sock.detach())
    try:
        plain.settimeout(timeout)
        return ssl.create_default_context(cafile=cafile).wrap_socket(plain, server_hostname=host)
    except BaseException:
        plain.close()
        raise
