"""Untrusted bytes against a real `steer daemon` process (issue 9, "Must show").

Anyone who can reach Redis can append to a session's nudge stream, and a store can
hold values steer never wrote. Entries are appended here with redis-py as raw bytes,
each followed by the doorbell, as a sender would: every bad one is reported once as
`nudge.rejected` and acknowledged, a good nudge sent right after with the real
`nudge` command is still delivered, and neither a restart nor a kill -9 reports a bad
entry twice. A poisoned stored value keeps its session from loading, and nothing else.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from daemon.keys import NUDGE_CONSUMER, NUDGE_GROUP, Keys
from tests.fixtures.steer_process import DaemonProcess, until

Fields = dict[bytes, bytes]

#: Each bad entry: how to spoil a good one, and a word its rejection's reason must hold.
SPOILERS: dict[str, tuple[Callable[[Fields], Fields], str]] = {
    "bad-number": (lambda f: f | {b"sent_at": b"17.5.3"}, "sent_at"),
    "inf": (lambda f: f | {b"sent_at": b"inf"}, "sent_at"),
    "nan": (lambda f: f | {b"sent_at": b"nan"}, "sent_at"),
    "1e999": (lambda f: f | {b"sent_at": b"1e999"}, "sent_at"),
    "text-not-utf8": (lambda f: f | {b"text": b"\xff\xfe"}, "UTF-8"),
    "id-not-utf8": (lambda f: f | {b"nudge_id": b"n-\xff\xfe"}, "UTF-8"),
    "missing-text": (lambda f: {k: v for k, v in f.items() if k != b"text"}, "missing field"),
    "unknown-field": (lambda f: f | {b"evil": b"1"}, "field"),
    "megabyte": (lambda f: f | {b"text": b"x" * 1_000_000}, "over"),
}


class Session:
    """One session of the daemon under test, seen through Redis with raw bytes."""

    def __init__(self, steerd: DaemonProcess, redis: Redis, keys: Keys, sid: str) -> None:
        self.steerd, self.keys, self.sid = steerd, keys, sid
        # redis-py types replies as unions over decode modes; this one gives bytes.
        self.redis: Any = redis

    def append(self, fields: Fields) -> str:
        """XADD an entry to the session's nudge stream and ring the doorbell."""
        entry_id: bytes = self.redis.xadd(self.keys.nudges(self.sid), fields)
        self.redis.publish(self.keys.doorbell, self.sid)
        return entry_id.decode()

    def nudge(self, text: str, *options: str) -> str:
        """Send a good nudge with the real `nudge` command; returns its id."""
        sent = self.steerd.cli(self.sid, text, *options, tool="nudge")
        assert sent.returncode == 0, sent.stderr
        return sent.stdout.strip()

    def events(self) -> list[dict[str, Any]]:
        entries = self.redis.xrange(self.keys.events(self.sid))
        return [json.loads(fields[b"frame"])["event"] for _, fields in entries]

    def seq_of(self, kind: str, nudge_id: str) -> int | None:
        for seq, event in enumerate(self.events()):
            if event["type"] == kind and _nudge_id(event) == nudge_id:
                return seq
        return None

    def wait_for(self, kind: str, nudge_id: str) -> int:
        until(lambda: self.seq_of(kind, nudge_id) is not None, what=f"{kind} of {nudge_id}")
        seq = self.seq_of(kind, nudge_id)
        assert seq is not None
        return seq

    def wait_listed(self) -> None:
        """Wait until `steer ls --json` lists the session (taken back after a restart)."""

        def listed() -> bool:
            result = self.steerd.cli("ls", "--json")
            assert result.returncode == 0, result.stderr
            return any(
                json.loads(row)["spec"]["id"] == self.sid for row in result.stdout.splitlines()
            )

        until(listed, what=f"{self.sid} to be listed")

    def root_status(self) -> str | None:
        statuses = [
            e["status"]
            for e in self.events()
            if e["type"] == "agent.status" and e["agent"] == "root"
        ]
        return statuses[-1] if statuses else None

    def rejections(self) -> Counter[str]:
        return Counter(e["nudge_id"] for e in self.events() if e["type"] == "nudge.rejected")

    def reasons(self) -> dict[str, str]:
        return {e["nudge_id"]: e["reason"] for e in self.events() if e["type"] == "nudge.rejected"}

    def unacknowledged(self) -> int:
        return int(self.redis.xpending(self.keys.nudges(self.sid), NUDGE_GROUP)["pending"])

    def good_fields(self, nudge_id: str) -> Fields:
        return {
            b"nudge_id": nudge_id.encode(),
            b"session": self.sid.encode(),
            b"agent": b"",
            b"mode": b"steer",
            b"text": b"from a raw client",
            b"author": b"mallory",
            b"sent_at": repr(time.time()).encode(),
        }


def _nudge_id(event: dict[str, Any]) -> str | None:
    if event["type"] == "nudge.received":
        return str(event["nudge"]["nudge_id"])
    return event.get("nudge_id")


def start_sessions(
    steerd: DaemonProcess, redis: Redis, keys: Keys, tmp_path: Path, count: int = 1
) -> list[Session]:
    """Start `count` sessions at once and wait until each is idle."""
    sessions = []
    for n in range(count):
        workdir = tmp_path / f"work-{n}"
        workdir.mkdir()
        run = steerd.cli("run", "[scenario:short] untrusted", "--workdir", str(workdir))
        assert run.returncode == 0, run.stderr
        sessions.append(Session(steerd, redis, keys, run.stdout.strip()))
    until(lambda: all(s.root_status() == "idle" for s in sessions), what="the sessions to idle")
    return sessions


def restart(steerd: DaemonProcess, *, kill: bool, while_down: Callable[[], None]) -> str:
    """Stop (or kill -9) the daemon, run `while_down`, start it; returns its new log."""
    log = steerd.home / "daemon.log"
    if kill:
        steerd.kill()
    else:
        steerd.stop()
    while_down()
    offset = log.stat().st_size
    steerd.start()
    return log.read_bytes()[offset:].decode()


def assert_clean(log: str) -> None:
    assert " ERROR " not in log and "Traceback" not in log, log


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[Redis]:
    with Redis.from_url(redis_url, decode_responses=False) as redis:
        yield redis


def test_bad_entries_are_rejected_once_across_restarts_and_never_block_delivery(
    steer_daemon: DaemonProcess, raw_redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    (session,) = start_sessions(steer_daemon, raw_redis, Keys(key_prefix), tmp_path)
    expected: dict[str, str] = {}  # the id each rejection must name -> a word of its reason
    for standing in (False, True):
        for name, (spoil, word) in SPOILERS.items():
            nudge_id = f"n-{name}-{'all' if standing else 'one'}"
            fields = spoil(session.good_fields(nudge_id))
            if standing:
                fields[b"standing"] = b"1"
            entry_id = session.append(fields)
            good = session.nudge(f"good after {nudge_id}", *(["--all"] if standing else []))

            reported = entry_id if name == "id-not-utf8" else nudge_id
            rejected = session.wait_for("nudge.rejected", reported)
            assert rejected < session.wait_for("nudge.received", good)
            session.wait_for("nudge.delivered", good)
            expected[reported] = word

    reasons = session.reasons()
    assert set(reasons) == set(expected)
    for reported, word in expected.items():
        assert word in reasons[reported], (reported, reasons[reported])
    assert session.rejections() == Counter(dict.fromkeys(expected, 1))
    assert session.unacknowledged() == 0

    # A clean stop and start: nothing is reported again, and nudges still land.
    log = restart(steer_daemon, kill=False, while_down=lambda: None)
    session.wait_listed()
    session.wait_for("nudge.delivered", session.nudge("after a clean restart"))
    assert_clean(log)
    assert "nudge.rejected" not in log
    assert session.rejections() == Counter(dict.fromkeys(expected, 1))

    # A kill -9; while down, a bad and a good entry arrive and are taken by the dead
    # owner's consumer without an acknowledgement, as if it had died mid-read.
    def read_but_never_acked() -> None:
        session.append(session.good_fields("n-down") | {b"sent_at": b"inf"})
        expected["n-down"] = "sent_at"
        session.append(session.good_fields("n-down-good"))
        stream = session.keys.nudges(session.sid)
        raw_redis.xreadgroup(NUDGE_GROUP, NUDGE_CONSUMER, {stream: ">"})
        assert session.unacknowledged() == 2

    log = restart(steer_daemon, kill=True, while_down=read_but_never_acked)
    session.wait_listed()
    assert session.wait_for("nudge.rejected", "n-down") < session.wait_for(
        "nudge.received", "n-down-good"
    )
    session.wait_for("nudge.delivered", "n-down-good")
    session.wait_for("nudge.delivered", session.nudge("after a kill -9"))
    assert_clean(log)
    assert session.rejections() == Counter(dict.fromkeys(expected, 1))
    assert session.unacknowledged() == 0


def test_poisoned_stored_values_keep_only_their_own_sessions_from_loading(
    steer_daemon: DaemonProcess, raw_redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    keys = Keys(key_prefix)
    healthy, *poisoned = start_sessions(steer_daemon, raw_redis, keys, tmp_path, 5)
    infinity, nan, not_utf8, wrong_type = (s.sid for s in poisoned)
    steer_daemon.stop()
    raw_redis.rpush(
        keys.standing(infinity),
        b'{"nudge_id":"n-p","session":"%s","text":"x","sent_at":Infinity}' % infinity.encode(),
    )
    raw_redis.set(keys.state(nan, "root"), b'{"status":"idle","commits":NaN}')
    raw_redis.set(keys.state(not_utf8, "root"), b'{"status":"idle\xff\xfe"}')
    raw_redis.delete(keys.state(wrong_type, "root"))
    raw_redis.hset(keys.state(wrong_type, "root"), "status", "idle")

    log = steer_daemon.home / "daemon.log"
    offset = log.stat().st_size
    steer_daemon.start()

    def errors() -> list[str]:
        return [
            line for line in log.read_bytes()[offset:].decode().splitlines() if " ERROR " in line
        ]

    # Each poisoned session is reported when claimed (at once, or when its lease expires).
    until(lambda: len(errors()) >= 4, what="the poisoned sessions to be reported")
    for key in (keys.standing(infinity), keys.state(nan, "root"), keys.state(wrong_type, "root")):
        assert [line for line in errors() if key in line], (key, errors())
    # The client refuses the bytes before steer sees them: the session is named.
    assert [line for line in errors() if f"sid={not_utf8}" in line and "utf-8" in line], errors()
    assert len(errors()) == 4, errors()

    healthy.wait_listed()
    healthy.wait_for("nudge.delivered", healthy.nudge("the others still work"))
