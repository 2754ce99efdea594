"""Run a real `redis-server`: a child process for tests, or the daemon's embedded one.

Owns the configuration steer runs Redis with (127.0.0.1 only, protected mode, AOF with
fsync every second, no RDB snapshots), starting it on a given or free port, waiting until
it answers PING, and stopping, killing and restarting it on the same port and directory
(so the AOF brings the data back).

`ensure_embedded(home)` keeps one *detached* server per STEER_HOME (daemonized, so it
outlives the daemon and `nudge` works while the daemon is down), protected by a random
password, and publishes its URL in `home/redis.url` (0600); `revive_embedded` starts it
again at the same URL after it died (the daemon's `RedisMonitor` calls it).

The settings go in a 0600 config file rather than on the command line, so a password
never shows in `ps`. Probes use the raw-socket client `daemon.resp`: this module stays
synchronous and free of redis-py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from daemon import resp
from daemon.paths import REDIS_URL_FILE, write_private

INSTALL_HINT = (
    "redis-server is not installed: install it (e.g. `apt-get install redis-server`) "
    "or set STEER_REDIS_URL to an existing Redis"
)
HOST = "127.0.0.1"
CONFIG_FILE = "redis.conf"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
#: Tries to start on a fresh free port when another process took the chosen one first.
PORT_ATTEMPTS = 3


class RedisUnavailable(RuntimeError):
    """redis-server is missing, or did not start or stop."""


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(INSTALL_HINT)
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server with its data, config, log (and pidfile) in `data_dir`.

    A child process by default; `detached=True` daemonizes it so it outlives this
    process (found again through `data_dir/redis.pid`).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        detached: bool = False,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self._auto_port = port is None
        self.port = free_port() if port is None else port
        self.password = password
        self.detached = detached
        #: More redis.conf lines, after steer's own (a later line wins), say
        #: `cluster-enabled yes`.
        self.extra_config = tuple(extra_config)
        self._proc: subprocess.Popen[bytes] | None = None
        # A detached server started earlier, maybe by another process, is found again
        # through its pidfile.
        self._pid = _read_pid(self.pid_file) if detached else None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id, or None if it was never started."""
        return self._pid

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def running(self) -> bool:
        """Whether the server process is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _is_live_redis(self._pid)

    def ready(self, timeout: float = 1.0) -> bool:
        """Whether this server answers PING (not while it loads its data).

        Checks the answering process id too: another server on the same port must not
        pass for this one.
        """
        try:
            with resp.connect(self.url, timeout=timeout) as conn:
                info = str(conn.execute("INFO", "server"))
                return f"process_id:{self._pid}\r" in info and conn.execute("PING") == "PONG"
        except (OSError, resp.RespError):
            return False

    def start(self, timeout: float = START_TIMEOUT_S) -> RedisServer:
        """Start the server and wait until it answers PING."""
        if self.running():
            raise RedisUnavailable(f"redis-server is already running (pid {self._pid})")
        binary = redis_server_binary()
        # A free port can be taken between choosing and binding it: then try another,
        # but only on the first start, because restarts must keep their port.
        attempts = PORT_ATTEMPTS if self._auto_port else 1
        while True:
            attempts -= 1
            try:
                self._launch(binary, timeout)
            except RedisUnavailable:
                if not attempts or "Address already in use" not in self._log_tail():
                    raise
                self.port = free_port()
            else:
                self._auto_port = False
                return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Shut down cleanly (the AOF is fsynced, the pidfile removed), else kill."""
        if not self.running():
            return
        if not self._shutdown():
            # The same clean shutdown, but only at the server's next cron tick (~100 ms).
            self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server (a crash: only what the AOF already holds survives)."""
        if self.running():
            self._signal(signal.SIGKILL)
            if not self._wait_exit(STOP_TIMEOUT_S):
                raise RedisUnavailable(f"redis-server pid {self._pid} survived SIGKILL")

    def restart(self, timeout: float = START_TIMEOUT_S) -> RedisServer:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _launch(self, binary: str, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / CONFIG_FILE
        write_private(config, self._config())
        deadline = time.monotonic() + timeout
        # Early failures (a bad config) go to stderr, before the log file is open.
        with self.log_file.open("ab") as log:
            if self.detached:
                self.pid_file.unlink(missing_ok=True)  # a stale one would name a dead pid
                self._pid = None
                launched = subprocess.run(
                    [binary, str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    timeout=timeout,
                    check=False,
                )
                if launched.returncode != 0:
                    raise self._failed(f"exited with code {launched.returncode}")
            else:
                self._proc = subprocess.Popen(
                    [binary, str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
                self._pid = self._proc.pid
        try:
            self.wait_ready(deadline - time.monotonic())
        except RedisUnavailable:
            self._signal(signal.SIGKILL)  # leave no half-started server behind
            raise

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until `ready()`; RedisUnavailable with the log tail if the server exits
        or the time runs out."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.detached:
                self._pid = _read_pid(self.pid_file)  # written once it has daemonized
            if self._pid is not None and not self.running():
                raise self._failed("exited during start-up")
            if time.monotonic() > deadline:
                raise self._failed(f"did not answer PING within {timeout:g}s")
            time.sleep(0.01)

    def _shutdown(self) -> bool:
        """Send SHUTDOWN; whether the server took it."""
        try:
            conn = resp.connect(self.url, timeout=1.0)
        except (OSError, resp.RespError):
            return False
        with conn:
            try:
                conn.execute("SHUTDOWN")
            except OSError:
                return True  # a successful SHUTDOWN closes the connection without a reply
            except resp.RespError:
                pass
        return False

    def _config(self) -> str:
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            "protected-mode yes",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            # A stream's newest node is allocated 4 KB ahead. With nodes of up to 8 KB
            # (not 4) a short session's frames fit in one, not in a full one plus a
            # second mostly empty one: an idle session's events take 5.8 KB, not 9.8.
            "stream-node-max-bytes 8192",
            f"dir {_quote(str(self.data_dir.resolve()))}",
            f"logfile {_quote(str(self.log_file.resolve()))}",
        ]
        if self.detached:
            lines += ["daemonize yes", f"pidfile {_quote(str(self.pid_file.resolve()))}"]
        if self.password:
            lines.append(f"requirepass {_quote(self.password)}")
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def _failed(self, what: str) -> RedisUnavailable:
        return RedisUnavailable(
            f"redis-server on {HOST}:{self.port} {what}; last lines of {self.log_file}:\n"
            + self._log_tail()
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _signal(self, signum: int) -> None:
        if self._pid is not None and self.running():
            os.kill(self._pid, signum)

    def _wait_exit(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


def ensure_embedded(home: Path) -> str:
    """Start the embedded Redis of this STEER_HOME unless it already runs; its URL.

    The server lives in `home/redis/` and is detached: it outlives the daemon. Its URL
    (with a random password) is written to `home/redis.url` (0600), where `nudge` and
    the daemon find it. A restart keeps the previous port (if still free) and password.
    """
    data_dir = home / "redis"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The lock keeps two daemons starting at once from running two servers on one AOF.
    with _locked(data_dir / "lock"):
        server = _embedded(home)
        if server.running():
            server.wait_ready()  # it may still be loading its AOF
        else:
            if not _port_is_free(server.port):
                server.port = free_port()
            server.start()
        write_private(home / REDIS_URL_FILE, server.url + "\n")
        return server.url


def revive_embedded(home: Path, url: str) -> bool:
    """Start the embedded Redis of this STEER_HOME again if its process is gone, with
    the port and password of `url` (the daemon's clients keep using it); whether it did.

    The same directory and config, so the AOF brings back everything it held. Raises
    RedisUnavailable if the server cannot start on that port (say another process took
    it) or if this home's server no longer has that URL.
    """
    with _locked(home / "redis" / "lock"):
        server = _embedded(home)
        if server.url != url:
            raise RedisUnavailable(
                f"the embedded Redis under {home} is no longer at the daemon's address; "
                "restart the daemon"
            )
        if server.running():
            try:
                server.wait_ready()  # alive but slow, or loading its AOF: nothing to restart
                return False
            except RedisUnavailable:
                if server.running():
                    raise
                # It was on its way out (killed, or crashed), not starting: start anew.
        if not _port_is_free(server.port):
            raise RedisUnavailable(
                f"cannot restart the embedded Redis: another process took port {server.port}"
            )
        server.start()
        return True


def stop_embedded(home: Path) -> bool:
    """Shut down the embedded Redis of this STEER_HOME; whether one was running."""
    server = _embedded(home)
    if not server.running():
        return False
    server.stop()
    return True


def _embedded(home: Path) -> RedisServer:
    """The embedded server of `home`: the port and password its config file names, if
    it has one, so that a restart keeps them and a lost URL file can be rewritten."""
    data_dir = home / "redis"
    config: dict[str, str] = {}
    try:
        for line in (data_dir / CONFIG_FILE).read_text().splitlines():
            name, _, value = line.partition(" ")
            config[name] = value.strip('"')  # our own hex password: nothing to unescape
    except OSError:
        pass
    port = int(config["port"]) if config.get("port", "").isdigit() else None
    password = config.get("requirepass") or os.urandom(16).hex()
    return RedisServer(data_dir, port, password=password, detached=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_live_redis(pid: int) -> bool:
    """Whether PID is a redis-server that still holds its resources (port, AOF).

    False for a pid that is gone or reused by another program. A zombie counts as
    alive while any of its threads still exits: until the last one has, the listening
    socket stays open.
    """
    if not Path("/proc/self").exists():  # no procfs (macOS): existence is all we know
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False
    # "<pid> (<comm>) <state> ..."; comm may itself contain ") ".
    comm, _, rest = stat.partition(" (")[2].rpartition(") ")
    exited = rest.startswith(("Z", "X")) and threads <= 1
    return comm.startswith("redis") and not exited


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As redis-server binds: connections of a previous server lingering in
        # TIME_WAIT must not make its port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _quote(value: str) -> str:
    """A redis.conf string: double-quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on PATH for the duration of a `with` block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
