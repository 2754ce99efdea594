"""The raw-socket RESP2 client against real redis-server processes: reply types, errors,
binary-safe text, AUTH/ACL users, SELECT, unix sockets, TLS, timeouts and URL masking."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from daemon import resp
from daemon.redis_server import RedisServer, free_port, redis_server_binary


@pytest.fixture
def conn(redis_url: str) -> Iterator[resp.Connection]:
    with resp.connect(redis_url) as connection:
        yield connection


def test_reply_types(conn: resp.Connection, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    assert conn.execute("PING") == "PONG"
    assert conn.execute("SET", key, "v") == "OK"
    assert conn.execute("GET", key) == "v"
    assert conn.execute("GET", f"{key_prefix}:absent") is None
    assert conn.execute("INCR", f"{key_prefix}:n") == 1
    assert conn.execute("RPUSH", f"{key_prefix}:l", "a", "", "c") == 3
    assert conn.execute("LRANGE", f"{key_prefix}:l", 0, -1) == ["a", "", "c"]
    assert conn.execute("HGETALL", f"{key_prefix}:absent") == []
    entry_id = conn.execute("XADD", f"{key_prefix}:s", "*", "f", "v")
    assert conn.execute("XRANGE", f"{key_prefix}:s", "-", "+") == [[entry_id, ["f", "v"]]]
    assert conn.execute("XREAD", "COUNT", 1, "STREAMS", f"{key_prefix}:s", "$") is None


def test_error_reply_raises_and_the_connection_stays_usable(
    conn: resp.Connection, key_prefix: str
) -> None:
    key = f"{key_prefix}:text"
    conn.execute("SET", key, "not a number")
    with pytest.raises(resp.RespError, match="not an integer"):
        conn.execute("INCR", key)
    assert conn.execute("PING") == "PONG"
    # An error inside an array is a value, not an exception.
    conn.execute("MULTI")
    conn.execute("INCR", key)
    conn.execute("GET", key)
    replies = conn.execute("EXEC")
    assert isinstance(replies, list)
    assert isinstance(replies[0], resp.RespError) and replies[1] == "not a number"


async def test_text_is_binary_safe_both_ways(
    conn: resp.Connection, redis_client: Redis, key_prefix: str
) -> None:
    tricky = "line\r\n$5\r\n*2\r\n-ERR not an error\r\n: é ✓ 日本\x00end"
    big = "x" * (1 << 20) + "é"  # spans many reads
    for name, value in (("tricky", tricky), ("big", big)):
        conn.execute("SET", f"{key_prefix}:{name}", value)
        assert conn.execute("GET", f"{key_prefix}:{name}") == value
        assert await redis_client.get(f"{key_prefix}:{name}") == value


def test_password_and_acl_users(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="s3cret") as server:
        with resp.connect(server.url) as admin:
            assert admin.execute("PING") == "PONG"
            # Reserved URL characters in a password arrive percent-encoded.
            admin.execute("ACL", "SETUSER", "alice", "on", ">p@ss:w/rd", "~*", "+@all")
        base = f"127.0.0.1:{server.port}"
        with resp.connect(f"redis://alice:p%40ss%3Aw%2Frd@{base}/0") as alice:
            assert alice.execute("ACL", "WHOAMI") == "alice"
        with resp.connect(f"redis://{base}/0") as anonymous, pytest.raises(resp.RespError):
            anonymous.execute("PING")  # NOAUTH
        with pytest.raises(resp.RespError, match="WRONGPASS"):
            resp.connect(f"redis://:wrong@{base}/0")


def test_url_database_is_selected(redis_server: RedisServer) -> None:
    with resp.connect(f"redis://127.0.0.1:{redis_server.port}/3") as conn:
        assert " db=3 " in str(conn.execute("CLIENT", "INFO"))


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--unixsocket", str(path), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"unix://{path}?db=2"
        conn = until_connected(url)
        with conn:
            assert " db=2 " in str(conn.execute("CLIENT", "INFO"))
    finally:
        proc.terminate()
        proc.wait(10)


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    options = {
        "port": "0",
        "tls-port": str(port),
        "bind": "127.0.0.1",
        "save": "",
        "tls-cert-file": str(cert),
        "tls-key-file": str(key),
        "tls-ca-cert-file": str(ca),
        "tls-auth-clients": "no",
    }
    argv = [item for name, value in options.items() for item in (f"--{name}", value)]
    proc = subprocess.Popen([redis_server_binary(), *argv], stdout=subprocess.DEVNULL)
    try:
        conn = until_connected(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}")
        with conn:
            assert conn.execute("PING") == "PONG"
        # The system CAs do not know the private one.
        with pytest.raises(ssl.SSLCertVerificationError):
            resp.connect(f"rediss://127.0.0.1:{port}/0")
    finally:
        proc.terminate()
        proc.wait(10)


def test_timeout_raises(conn: resp.Connection, key_prefix: str) -> None:
    conn.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.execute("BLPOP", f"{key_prefix}:never", 5)
    assert time.monotonic() - started < 3


def test_closed_connection_and_unreachable_server(conn: resp.Connection) -> None:
    own_id = conn.execute("CLIENT", "ID")
    assert conn.execute("CLIENT", "KILL", "ID", str(own_id), "SKIPME", "no") == 1
    with pytest.raises(OSError):
        conn.execute("PING")
    with pytest.raises(ConnectionRefusedError):
        resp.connect(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://alice@host:1/0", "redis://alice@host:1/0"),
        ("redis://alice:hunter2@host:1/0", "redis://alice:***@host:1/0"),
        ("redis://:hunter2@host", "redis://:***@host"),
        (
            "rediss://u:p%40ss@host/0?ssl_ca_certs=/ca.pem",
            "rediss://u:***@host/0?ssl_ca_certs=/ca.pem",
        ),
        ("unix://:hunter2@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        # Unescaped reserved characters: mask everything up to the last "@".
        ("redis://u:hun/ter#2@host:1", "redis://u:***@host:1"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert resp.mask_url(url) == masked


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://u:se#cret@127.0.0.1", "redis://127.0.0.1/x"]
)
def test_malformed_urls_raise_value_error_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        resp.connect(url)
    assert "cret" not in str(caught.value)


def until_connected(url: str, timeout: float = 10.0) -> resp.Connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return resp.connect(url, timeout=1.0)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 it signed."""
    openssl = shutil.which("openssl")
    assert openssl, "the TLS test needs the openssl command (apt-get install openssl)"
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str | Path) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=steer test CA",
        "-keyout", ca_key, "-out", ca)  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
        "-out", csr)  # fmt: skip
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", cert)  # fmt: skip
    return ca, cert, key
