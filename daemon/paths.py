"""Where a steer installation keeps its state, and how clients find the daemon.

Light on purpose: the `nudge` command imports this and must start fast, so no
pydantic here. `daemon.settings.Settings` reads the same variables for the daemon.

- STEER_HOME (default ~/.steer): state directory; holds `daemon.json` (where the
  API listens), `token` (0600), `redis.url` (the embedded Redis) and `redis/`.
- STEER_REDIS_URL: an external Redis; unset means the embedded one.
- STEER_KEY_PREFIX (default "steer"): the Redis key prefix.
"""

from __future__ import annotations

import os

# `nudge` must start without pathlib or typing (they bring re, collections, contextlib):
# mypy takes any name TYPE_CHECKING as true, and nothing else needs Path at import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

DAEMON_FILE = "daemon.json"
TOKEN_FILE = "token"
REDIS_URL_FILE = "redis.url"


def steer_home() -> Path:
    from pathlib import Path

    return Path(_home_dir())


def _home_dir() -> str:
    return os.path.expanduser(os.environ.get("STEER_HOME") or "~/.steer")


def key_prefix() -> str:
    return os.environ.get("STEER_KEY_PREFIX") or "steer"


def configured_redis_url() -> str | None:
    """The Redis URL a client should use: STEER_REDIS_URL, else the embedded one's."""
    url = os.environ.get("STEER_REDIS_URL")
    if url:
        return url
    try:
        with open(os.path.join(_home_dir(), REDIS_URL_FILE)) as file:
            return file.read().strip() or None
    except OSError:
        return None


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically (readers never see it half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to an existing file
    os.replace(tmp, path)
