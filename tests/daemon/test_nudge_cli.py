"""The real `nudge` command as a subprocess against real Redis: the stream entry it
writes, session resolution, every error path, --wait (the test plays the daemon with
the real protocol models), a Redis crash after the XADD, and a retried XADD."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from daemon import nudge_cli
from daemon.keys import Keys
from daemon.paths import REDIS_URL_FILE
from daemon.redis_server import RedisServer, free_port
from protocol.envelope import Frame
from protocol.events import (
    AgentStatusChanged,
    CacheReport,
    Event,
    NudgeApplied,
    NudgeDelivered,
    NudgeRejected,
)
from protocol.nudges import Nudge

NUDGE_ID = re.compile(r"n-[0-9a-f]{16}")
SESSIONS = {"s-3f2a": "fix-tests", "s-3f9b": "port", "s-9c01": "s-3f2a"}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEER_")}
    return env | {
        "STEER_REDIS_URL": redis_url,
        "STEER_KEY_PREFIX": key_prefix,
        "STEER_HOME": str(tmp_path / "home"),
        "USER": "alice",
    }


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
async def sessions(redis_client: Redis, keys: Keys) -> AsyncIterator[dict[str, str]]:
    for sid, name in SESSIONS.items():
        await redis_client.hset(keys.sessions, sid, name)
    yield SESSIONS


async def spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.nudge_cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, stdin: bytes = b"") -> Result:
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def nudge(env: dict[str, str], *args: str, stdin: bytes = b"") -> Result:
    return await finish(await spawn(env, *args), stdin)


def one_line_error(result: Result, code: int) -> str:
    """The error message of a failed run, after checking it is one line on stderr."""
    assert result.code == code, result
    assert result.out == "" and result.err.endswith("\n") and result.err.count("\n") == 1
    assert result.err.startswith("nudge: ")
    return result.err.removeprefix("nudge: ").rstrip("\n")


async def stream_nudges(redis_client: Redis, keys: Keys) -> list[tuple[str, dict[str, str]]]:
    """Every entry of the test sessions' nudge streams, oldest first."""
    found = []
    for sid in SESSIONS:
        entries: Any = await redis_client.xrange(keys.nudges(sid))  # typed for every decode mode
        found += [(entry_id, fields) for entry_id, fields in entries]
    return sorted(found, key=lambda entry: tuple(map(int, entry[0].split("-"))))


async def sent_nudge(redis_client: Redis, keys: Keys) -> Nudge:
    """The nudge the command wrote, once it is in a stream (bounded wait)."""
    streams = {keys.nudges(sid): "0-0" for sid in SESSIONS}
    reply: Any = await redis_client.xread(streams, count=1, block=10_000)  # type: ignore[arg-type]
    assert reply, "the nudge command wrote nothing within 10 s"
    [[_, [(_, fields)]]] = reply
    return Nudge.from_fields(fields)


async def emit(redis_client: Redis, keys: Keys, sid: str, seq: int, event: Event) -> None:
    """Append an event the way the daemon does: a Frame, entry id `<seq>-0`."""
    frame = Frame(session=sid, seq=seq, ts=time.time(), event=event)
    await redis_client.xadd(keys.events(sid), {"frame": frame.model_dump_json()}, id=f"{seq}-0")


async def test_writes_exactly_the_fields_of_a_nudge(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    before = time.time()
    result = await nudge(env, "s-3f2a", "no casts")

    assert result.code == 0 and result.err == ""
    assert NUDGE_ID.fullmatch(result.out.rstrip("\n")) and result.out.count("\n") == 1
    [(_, fields)] = await stream_nudges(redis_client, keys)
    sent = Nudge.from_fields(fields)
    assert fields == sent.to_fields()
    assert sent.nudge_id == result.out.strip()
    assert (sent.session, sent.agent, sent.mode, sent.text) == ("s-3f2a", None, "steer", "no casts")
    assert sent.author == "alice" and before <= sent.sent_at <= time.time()


async def test_agent_queue_author_and_text_from_stdin(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    text = "first line\nsecond: é ✓\n"
    result = await nudge(env, "port/a-7", "-", "--queue", "--author", "bob", stdin=text.encode())

    assert result.code == 0, result
    [(_, fields)] = await stream_nudges(redis_client, keys)
    sent = Nudge.from_fields(fields)
    assert (sent.session, sent.agent, sent.mode) == ("s-3f9b", "a-7", "queue")
    assert sent.author == "bob" and sent.text == text.rstrip("\n")


@pytest.mark.parametrize(
    ("flags", "mode", "standing"),
    [
        (["--redirect"], "redirect", False),
        (["--all"], "steer", True),
        (["--all", "--redirect"], "redirect", True),
        (["--queue", "--all"], "queue", True),
        (["--redirect", "--redirect"], "redirect", False),
    ],
)
async def test_redirect_and_all_are_encoded_as_a_nudge(
    env: dict[str, str],
    sessions: dict[str, str],
    redis_client: Redis,
    keys: Keys,
    flags: list[str],
    mode: str,
    standing: bool,
) -> None:
    result = await nudge(env, "fix-tests", "stop and use the helper", *flags)

    assert result.code == 0, result
    [(_, fields)] = await stream_nudges(redis_client, keys)
    sent = Nudge.from_fields(fields)
    assert fields == sent.to_fields()  # "standing" is there only when it is "1"
    assert fields.get("standing") == ("1" if standing else None)
    assert (sent.session, sent.agent, sent.mode, sent.standing) == ("s-3f2a", None, mode, standing)
    assert sent.target == ("s-3f2a/*" if standing else "s-3f2a")


async def test_rule_flags_make_a_standing_rule_and_a_bad_one_sends_nothing(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    assert (await nudge(env, "fix-tests", "no casts", "--rule", r"regex:\(int\)")).code == 0
    result = await nudge(env, "port", "no TODOs", "--rule-cmd=! grep -n TODO", "--rule-veto")
    assert result.code == 0, result
    (_, regex), (_, cmd) = await stream_nudges(redis_client, keys)
    assert regex == Nudge.from_fields(regex).to_fields()
    assert (regex["standing"], regex["rule_regex"]) == ("1", r"\(int\)")  # a rule is standing
    assert "rule_veto" not in regex and "rule_cmd" not in regex
    sent = Nudge.from_fields(cmd)
    assert (sent.rule_cmd, sent.rule_veto, sent.standing) == ("! grep -n TODO", True, True)

    bad_regex = "the rule regex does not compile (RE2 syntax: no lookaround)"
    for args, code, message in [
        (["--rule", "regex:(a"], 1, bad_regex),
        (["--rule", "regex:(?=a)"], 1, bad_regex),
        (["--rule", "x"], 2, "--rule takes regex:PATTERN, not 'x' (see nudge --help)"),
        (["--rule-veto"], 1, "rule_veto applies to a rule (rule_regex or rule_cmd)"),
        (["--rule", "regex:a", "--rule-cmd", "true"], 1, "a rule is a regex or a command"),
    ]:
        error = one_line_error(await nudge(env, "fix-tests", "x", *args), code)
        assert error.startswith(message), error
    refused = await nudge(env, "port/a-7", "x", "--rule", "regex:a")
    assert one_line_error(refused, 2).startswith("a rule holds for every agent of a session")
    assert len(await stream_nudges(redis_client, keys)) == 2


@pytest.mark.parametrize(
    ("query", "sid"),
    [
        ("s-3f2a", "s-3f2a"),  # an exact id wins over a session named "s-3f2a"
        ("fix-tests", "s-3f2a"),
        ("port", "s-3f9b"),
        ("s-3f9", "s-3f9b"),
        ("s-9", "s-9c01"),
    ],
)
async def test_resolves_ids_names_and_unique_prefixes(
    env: dict[str, str],
    sessions: dict[str, str],
    redis_client: Redis,
    keys: Keys,
    query: str,
    sid: str,
) -> None:
    assert (await nudge(env, query, "hello")).code == 0
    [(_, fields)] = await stream_nudges(redis_client, keys)
    assert fields["session"] == sid


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "x"], "unknown session 'nope'"),
        (["s-3f", "x"], "ambiguous session 's-3f': s-3f2a (fix-tests), s-3f9b (port)"),
        (["/a-7", "x"], "no session given"),
        (["s-3f2a", " \n\t "], "the text is empty"),
        (["s-3f2a", "x" * 16385], "the text is 16385 bytes; the limit is 16384"),
        (["s-3f2a", "é" * 8193], "the text is 16386 bytes; the limit is 16384"),
        (["s-3f2a", "x", "--author", "a" * 65], "the author is over 64 characters"),
        (["s-3f2a", "x", "--timeout", "5"], "--timeout only applies with --wait"),
        (["s-3f2a", "x", "--wait", "--timeout", "soon"], "--timeout must be a positive number"),
        (["s-3f2a", "x", "--author"], "--author needs a value"),
        (["s-3f2a", "-x"], "unknown option '-x' (put -- before a text that starts with -)"),
        (["s-3f2a"], "expected SESSION[/AGENT] and TEXT, got 1 arguments"),
        (["s-3f2a", "x", "--redirect", "--queue"], "--redirect and --queue exclude each other"),
        (["s-3f2a", "x", "--queue", "--redirect"], "--redirect and --queue exclude each other"),
        (["s-3f2a/a-7", "x", "--all"], "--all addresses every agent of a session: give SESSION"),
        (["--all", "port/root", "x"], "--all addresses every agent of a session: give SESSION"),
    ],
)
async def test_bad_input_is_one_line_and_sends_nothing(
    env: dict[str, str],
    sessions: dict[str, str],
    redis_client: Redis,
    keys: Keys,
    args: list[str],
    message: str,
) -> None:
    # What the daemon would refuse is 1, as from `steer`; the command line itself, 2.
    refused = message.startswith(("unknown session", "ambiguous", "the text", "the author"))
    code = nudge_cli.EXIT_REFUSED if refused else nudge_cli.EXIT_USAGE
    error = one_line_error(await nudge(env, *args), code)
    assert error.startswith(message)
    assert await stream_nudges(redis_client, keys) == []


async def test_largest_text_and_a_leading_dash_after_double_dash(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    assert (await nudge(env, "s-3f2a", "é" * 8192)).code == 0
    assert (await nudge(env, "s-3f2a", "--", "-5 points for casts")).code == 0
    texts = [Nudge.from_fields(f).text for _, f in await stream_nudges(redis_client, keys)]
    assert texts == ["é" * 8192, "-5 points for casts"]


async def test_help(env: dict[str, str]) -> None:
    result = await nudge(env, "--help")
    assert result.code == 0 and result.out.startswith("usage: nudge SESSION[/AGENT] TEXT")
    assert "exit codes" in result.out.lower()
    for option in ("--redirect", "--queue", "--all", "--wait", "--timeout", "--author"):
        assert f"  {option}" in result.out


async def test_unreachable_redis_masks_the_password(env: dict[str, str]) -> None:
    port = free_port()
    env["STEER_REDIS_URL"] = f"redis://alice:hunter2@127.0.0.1:{port}/0"
    error = one_line_error(await nudge(env, "s-3f2a", "x"), nudge_cli.EXIT_USAGE)
    assert (
        error == f"cannot reach Redis at redis://alice:***@127.0.0.1:{port}/0: Connection refused"
    )


async def test_wrong_password_masks_it(env: dict[str, str], tmp_path: Path) -> None:
    with RedisServer(tmp_path / "locked", password="right") as locked:
        env["STEER_REDIS_URL"] = f"redis://:hunter2@127.0.0.1:{locked.port}/0"
        error = one_line_error(await nudge(env, "s-3f2a", "x"), nudge_cli.EXIT_USAGE)
    assert error.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{locked.port}/0: ")
    assert "WRONGPASS" in error and "hunter2" not in error


async def test_no_redis_configured(env: dict[str, str]) -> None:
    del env["STEER_REDIS_URL"]
    error = one_line_error(await nudge(env, "s-3f2a", "x"), nudge_cli.EXIT_USAGE)
    assert error.startswith("no Redis configured: set STEER_REDIS_URL, or run `steer daemon`")


@pytest.fixture
def embedded_env(env: dict[str, str]) -> dict[str, str]:
    """No STEER_REDIS_URL: the URL is in STEER_HOME/redis.url, as `steer daemon` leaves it."""
    home = Path(env["STEER_HOME"])
    home.mkdir()
    (home / REDIS_URL_FILE).write_text(env.pop("STEER_REDIS_URL") + "\n")
    return env


async def test_uses_the_embedded_redis_url_file(
    embedded_env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    assert (await nudge(embedded_env, "s-3f2a", "x")).code == 0
    assert len(await stream_nudges(redis_client, keys)) == 1


async def test_least_privilege_acl_user_can_send_and_wait(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    # What a sender needs: read the session index, append nudges and, for --wait,
    # read the event streams.
    user, p = f"sender-{keys.prefix}", keys.prefix
    await redis_client.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", user, "on", ">pw", "resetkeys", "-@all",
        "+hgetall", "+xadd", "+xrevrange", "+xread", "+publish",
        f"~{p}:sessions", f"~{p}:{{*}}:nudges", f"~{p}:{{*}}:events", f"&{p}:doorbell",
    )  # fmt: skip
    try:
        env["STEER_REDIS_URL"] = env["STEER_REDIS_URL"].replace("redis://", f"redis://{user}:pw@")
        assert (await nudge(env, "s-3f2a", "x")).code == 0
        waited = await nudge(env, "s-3f2a", "x", "--wait", "--timeout", "0.2")
        assert waited.code == nudge_cli.EXIT_TIMEOUT, waited
    finally:
        await redis_client.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("share", "reads"),
    [
        (0.996, "99.6% of the prior prompt read from cache"),
        (None, "no prior request to compare"),
    ],
)
async def test_wait_reports_where_and_how_it_landed(
    env: dict[str, str],
    sessions: dict[str, str],
    redis_client: Redis,
    keys: Keys,
    share: float | None,
    reads: str,
) -> None:
    sid = "s-3f2a"
    await emit(redis_client, keys, sid, 1, AgentStatusChanged(agent="root", status="running"))
    proc = await spawn(env, "fix-tests", "no casts", "--wait", "--timeout", "30")

    sent = await sent_nudge(redis_client, keys)
    other = NudgeDelivered(
        agent="root",
        nudge_id="n-someoneelse0000",
        path="system_message",
        request_no=6,
        cache=CacheReport(prompt_tokens=10, cache_read_input_tokens=0),
    )
    await emit(redis_client, keys, sid, 2, other)
    applied = NudgeApplied(
        agent="root", nudge_id=sent.nudge_id, mode="steer", path="system_message", request_no=7
    )
    await emit(redis_client, keys, sid, 3, applied)
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 10)
    assert line.decode() == (
        f"applied to {sid} (root) in request 7 via system_message; waiting for the model...\n"
    )
    cache = CacheReport(
        prompt_tokens=1040,
        cache_read_input_tokens=996,
        prior_prompt_tokens=None if share is None else 1000,
        prior_cached_share=share,
    )
    delivered = NudgeDelivered(
        agent="root", nudge_id=sent.nudge_id, path="system_message", request_no=7, cache=cache
    )
    await emit(redis_client, keys, sid, 4, delivered)

    result = await finish(proc)
    assert result.code == 0, result
    assert result.out == f"delivered to {sid} (root) in request 7 via system_message; {reads}\n"
    assert result.err == ""


async def test_wait_names_the_agent_and_the_fallback_path(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    proc = await spawn(env, "s-3f9b/a-7", "use the helper", "--wait")
    sent = await sent_nudge(redis_client, keys)
    cache = CacheReport(
        prompt_tokens=500,
        cache_read_input_tokens=400,
        prior_prompt_tokens=480,
        prior_cached_share=0.833,
        cache_miss_reason="messages_changed",
    )
    delivered = NudgeDelivered(
        agent="a-7", nudge_id=sent.nudge_id, path="user_note", request_no=3, cache=cache
    )
    await emit(redis_client, keys, "s-3f9b", 1, delivered)
    result = await finish(proc)
    assert result.code == 0, result
    assert result.out == (
        "delivered to s-3f9b/a-7 in request 3 via user_note; 83.3% of the prior prompt read "
        "from cache (cache miss: messages_changed)\n"
    )


async def test_wait_for_a_standing_nudge_names_the_first_agent_that_answered(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    proc = await spawn(env, "s-3f2a", "everyone: no casts", "--all", "--wait", "--timeout", "30")
    sent = await sent_nudge(redis_client, keys)
    assert sent.standing and sent.agent is None
    applied = NudgeApplied(
        agent="a-2", nudge_id=sent.nudge_id, mode="steer", path="system_message", request_no=4
    )
    await emit(redis_client, keys, "s-3f2a", 1, applied)
    cache = CacheReport(prompt_tokens=10, cache_read_input_tokens=0)
    delivered = NudgeDelivered(
        agent="root", nudge_id=sent.nudge_id, path="system_message", request_no=9, cache=cache
    )
    await emit(redis_client, keys, "s-3f2a", 2, delivered)

    result = await finish(proc)
    assert result.code == 0, result
    assert result.err == (
        "applied to s-3f2a/a-2 in request 4 via system_message; waiting for the model...\n"
    )
    assert result.out == (
        "delivered to s-3f2a (root) in request 9 via system_message; no prior request to compare\n"
    )


async def test_wait_reports_a_rejection(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    proc = await spawn(env, "s-3f2a/ghost", "x", "--wait", "--timeout", "30")
    sent = await sent_nudge(redis_client, keys)
    rejected = NudgeRejected(agent="", nudge_id=sent.nudge_id, reason="no agent s-3f2a/ghost")
    await emit(redis_client, keys, "s-3f2a", 1, rejected)

    error = one_line_error(await finish(proc), nudge_cli.EXIT_REJECTED)
    assert error == f"{sent.nudge_id} rejected: no agent s-3f2a/ghost"


async def test_wait_times_out_but_the_nudge_stays_queued(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    started = time.monotonic()
    result = await nudge(env, "s-3f2a", "x", "--wait", "--timeout", "0.5")
    assert time.monotonic() - started < 10
    error = one_line_error(result, nudge_cli.EXIT_TIMEOUT)
    [(_, fields)] = await stream_nudges(redis_client, keys)
    assert error == (
        f"{fields['nudge_id']} not applied within 0.5s; it stays queued and will still be applied"
    )


async def test_wait_times_out_after_applied(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    proc = await spawn(env, "s-3f2a", "x", "--wait", "--timeout", "2")
    sent = await sent_nudge(redis_client, keys)
    applied = NudgeApplied(
        agent="root", nudge_id=sent.nudge_id, mode="steer", path="system_message", request_no=2
    )
    await emit(redis_client, keys, "s-3f2a", 1, applied)
    result = await finish(proc)
    assert result.code == nudge_cli.EXIT_TIMEOUT
    assert result.err.splitlines() == [
        "applied to s-3f2a (root) in request 2 via system_message; waiting for the model...",
        f"nudge: {sent.nudge_id} was applied but the model has not answered within 2s",
    ]


async def test_acknowledged_nudge_survives_a_redis_crash(
    env: dict[str, str], private_redis: RedisServer, keys: Keys
) -> None:
    env["STEER_REDIS_URL"] = private_redis.url
    async with Redis.from_url(private_redis.url, decode_responses=True) as client:
        await client.hset(keys.sessions, "s-3f2a", "fix-tests")
    result = await nudge(env, "s-3f2a", "no casts")
    assert result.code == 0, result

    # everysec may postpone the AOF write() while a background fsync runs (and still reply);
    # once the buffer is in the file, a process kill cannot lose it (an OS crash could).
    async with Redis.from_url(private_redis.url, decode_responses=True) as client:
        for _ in range(500):  # bounded: Redis writes its AOF buffer at least every 2 s
            if not (await client.info("persistence"))["aof_buffer_length"]:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("Redis never wrote its AOF buffer")
    private_redis.kill()  # SIGKILL right after the XADD was acknowledged
    private_redis.restart()

    async with Redis.from_url(private_redis.url, decode_responses=True) as client:
        [(_, fields)] = await stream_nudges(client, keys)
    assert Nudge.from_fields(fields).nudge_id == result.out.strip()


async def test_xadd_is_retried_with_the_same_nudge_id_when_the_reply_is_lost(
    env: dict[str, str],
    sessions: dict[str, str],
    redis_client: Redis,
    keys: Keys,
    redis_server: RedisServer,
) -> None:
    with ReplyEater(redis_server.port) as proxy:
        env["STEER_REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        result = await nudge(env, "s-3f2a", "no casts")
    assert result.code == 0, result
    # Both copies carry one nudge id: the daemon applies it once.
    entries = await stream_nudges(redis_client, keys)
    assert [fields["nudge_id"] for _, fields in entries] == [result.out.strip()] * 2


async def test_lost_xadd_reply_and_no_redis_for_the_retry(
    env: dict[str, str],
    sessions: dict[str, str],
    redis_client: Redis,
    keys: Keys,
    redis_server: RedisServer,
) -> None:
    with ReplyEater(redis_server.port, then_refuse=True) as proxy:
        env["STEER_REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        error = one_line_error(await nudge(env, "s-3f2a", "no casts"), nudge_cli.EXIT_USAGE)
    [(_, fields)] = await stream_nudges(redis_client, keys)
    assert error == (
        f"cannot reach Redis at redis://127.0.0.1:{proxy.port}/0: Connection refused; "
        f"{fields['nudge_id']} may have been sent"
    )


async def test_interrupted_wait_says_the_nudge_stays_queued(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    proc = await spawn(env, "s-3f2a", "x", "--wait")
    sent = await sent_nudge(redis_client, keys)
    await until_blocked_in_xread(redis_client)
    proc.send_signal(signal.SIGINT)
    error = one_line_error(await finish(proc), nudge_cli.EXIT_INTERRUPTED)
    assert error == f"interrupted; {sent.nudge_id} was sent and stays queued"


async def until_blocked_in_xread(redis_client: Redis) -> None:
    """Until some client (the nudge command, in these tests) waits in XREAD BLOCK.

    Redis has no event for that, so poll CLIENT LIST, with a deadline."""
    async with asyncio.timeout(10):
        while True:
            clients = await redis_client.client_list()
            if any(c["cmd"] == "xread" and "b" in c["flags"] for c in clients):
                return
            await asyncio.sleep(0.01)


class ReplyEater:
    """A TCP proxy to Redis that, on its first connection, forwards the first XADD and
    then drops the connection instead of passing the reply on: a write whose
    acknowledgement was lost. With `then_refuse`, it also stops accepting connections."""

    def __init__(self, upstream_port: int, *, then_refuse: bool = False) -> None:
        self._upstream_port = upstream_port
        self._then_refuse = then_refuse
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._first = True
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = [self._listener]

    def __enter__(self) -> ReplyEater:
        self._start(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sock in self._sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(5)
            assert not thread.is_alive()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._sockets += [client, upstream]
            cut = threading.Event() if self._first else None
            self._first = False
            self._start(self._pump, client, upstream, cut, True)
            self._start(self._pump, upstream, client, cut, False)

    def _pump(
        self, src: socket.socket, dst: socket.socket, cut: threading.Event | None, requests: bool
    ) -> None:
        try:
            while data := src.recv(65536):
                if cut is not None and requests and b"XADD" in data:
                    cut.set()  # before forwarding: the reply cannot overtake it
                if cut is not None and not requests and cut.is_set():
                    if self._then_refuse:
                        _close(self._listener)
                    _close(dst)  # the reply to the XADD: eat it
                    return
                dst.sendall(data)
        except OSError:
            return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
    sock.close()


async def test_an_exact_name_is_looked_up_and_a_stale_one_ignored(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    """The names hash the daemon keeps (name -> id) answers an exact name, if the id it
    holds is listed; a name reserved for a session never listed is not one."""
    await redis_client.hset(keys.names, mapping={"port": "s-3f9b", "ghost": "s-0000"})
    assert (await nudge(env, "port", "hello")).code == 0
    [(_, fields)] = await stream_nudges(redis_client, keys)
    assert fields["session"] == "s-3f9b"
    refused = await nudge(env, "ghost", "hello")
    assert one_line_error(refused, 1) == "unknown session 'ghost'"


async def test_a_sender_that_may_only_read_the_index_still_resolves(
    env: dict[str, str], sessions: dict[str, str], redis_client: Redis, keys: Keys
) -> None:
    """An ACL user without HEXISTS or HGET (design.md's nudger before they were added)
    reads the whole index instead."""
    user, password = f"nudger-{keys.prefix}", "pw"
    p = keys.prefix
    await redis_client.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", "resetchannels",
        "-@all", "+hgetall", "+xadd", "+publish", f"~{p}:sessions", f"~{p}:{{*}}:nudges",
        f"&{p}:doorbell",
    )  # fmt: skip
    try:
        address = env["STEER_REDIS_URL"].rpartition("@")[2].removeprefix("redis://")
        limited = env | {"STEER_REDIS_URL": f"redis://{user}:{password}@{address}"}
        for query in ("fix-tests", "s-3f9", "s-3f2a"):
            assert (await nudge(limited, query, "hello")).code == 0, query
        sent = [fields["session"] for _, fields in await stream_nudges(redis_client, keys)]
        assert sent == ["s-3f2a", "s-3f9b", "s-3f2a"]
    finally:
        await redis_client.execute_command("ACL", "DELUSER", user)
