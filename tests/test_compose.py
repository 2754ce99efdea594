"""docker-compose.yml and the Dockerfile, checked without a Docker daemon: the compose
file parses, its variables resolve the way compose resolves them, the image installs
the checkout the way the README does (tests/test_install.py runs that install in a
fresh venv), and the paths line up between the host, the container and what the daemon
reads (`Settings`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from daemon.settings import Settings

REPO = Path(__file__).resolve().parent.parent
#: `${NAME}`, `${NAME:-default}` and `${NAME:?error}`, as compose interpolates them.
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")
HOST_ENV = {
    "STEER_REDIS_PASSWORD": "0123abcd",
    "STEER_WORKSPACE": "/home/ada/projects",
    "STEER_HOME": "/home/ada/.steer",
    "STEER_PORT": "7999",
}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(rest)
        return rest or ""

    return VARIABLE.sub(one, value)


def compose(env: dict[str, str]) -> dict[str, Any]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    resolved: dict[str, Any] = interpolate(document, env)
    return resolved


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_compose_file_parses_and_needs_a_password_and_a_workspace() -> None:
    services = compose(HOST_ENV)["services"]
    assert set(services) == {"redis", "steerd"}
    for missing in ("STEER_REDIS_PASSWORD", "STEER_WORKSPACE"):
        with pytest.raises(KeyError, match=f"set {missing} in .env"):
            compose({k: v for k, v in HOST_ENV.items() if k != missing})


def test_redis_has_a_password_aof_and_noeviction_on_loopback_only() -> None:
    redis = compose(HOST_ENV)["services"]["redis"]
    command = redis["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert flags["--requirepass"] == HOST_ENV["STEER_REDIS_PASSWORD"]
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert all(port.startswith("127.0.0.1:") for port in redis["ports"])


def test_the_daemon_is_built_not_installed_at_start() -> None:
    steerd = compose(HOST_ENV)["services"]["steerd"]
    assert "image" not in steerd and steerd["build"]["context"] == "."
    assert "command" not in steerd  # the image's CMD: nothing installed at start
    instructions = dockerfile()
    installs = [args for kind, args in instructions if kind == "RUN" and "pip" in args]
    copied = [args.split() for kind, args in instructions if kind == "COPY"]
    assert copied == [[".", "/tmp/steer"]]
    # The install tests/test_install.py runs in a fresh venv: `pip install CHECKOUT`,
    # not editable.
    assert len(installs) == 1
    pip = shlex.split(installs[0].split("&&")[0])
    assert pip[:2] == ["pip", "install"] and "-e" not in pip and "--editable" not in pip
    assert [arg for arg in pip[2:] if not arg.startswith("--")] == ["/tmp/steer"]
    assert ("CMD", '["steer", "daemon"]') in instructions


def test_the_daemon_runs_as_steer_with_the_host_users_ids() -> None:
    instructions = dockerfile()
    users = [args for kind, args in instructions if kind == "USER"]
    assert users == ["steer"]
    last_run = max(i for i, (kind, _) in enumerate(instructions) if kind == "RUN")
    assert instructions.index(("USER", "steer")) > last_run  # nothing runs as root after
    args = compose(HOST_ENV | {"STEER_UID": "1234", "STEER_GID": "99"})["services"]["steerd"]
    assert args["build"]["args"] == {"STEER_UID": "1234", "STEER_GID": "99"}
    assert {"ARG STEER_UID=1000", "ARG STEER_GID=1000"} <= {f"{k} {a}" for k, a in instructions}


def test_the_paths_and_the_port_line_up_for_the_host() -> None:
    steerd = compose(HOST_ENV)["services"]["steerd"]
    env = {k: str(v) for k, v in steerd["environment"].items()}
    settings = Settings.model_validate(
        {k.removeprefix("STEER_").lower(): v for k, v in env.items() if k.startswith("STEER_")}
    )
    mounts = dict(volume.split(":", 1) for volume in steerd["volumes"])
    # The host's STEER_HOME is the daemon's: the host's `steer` reads its daemon.json.
    assert mounts[HOST_ENV["STEER_HOME"]] == str(settings.home)
    # The workspace at the same absolute path: `--workdir` means the same folder.
    assert mounts[HOST_ENV["STEER_WORKSPACE"]] == HOST_ENV["STEER_WORKSPACE"]
    # Published on the host's loopback at the port it listens on inside, so daemon.json's
    # http://127.0.0.1:PORT is right on the host and the guard's Host check passes.
    assert steerd["ports"] == [f"127.0.0.1:{settings.port}:{settings.port}"]
    assert settings.port == int(HOST_ENV["STEER_PORT"])
    assert settings.host == "0.0.0.0"
    # The daemon reaches Redis by its service name with the password Redis requires.
    url = urlsplit(str(settings.redis_url))
    assert (url.hostname, url.port, url.password) == ("redis", 6379, "0123abcd")
    image_env = next(args for kind, args in dockerfile() if kind == "ENV")
    assert f"STEER_HOME={settings.home}" in image_env.split()
