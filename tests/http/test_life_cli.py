"""A session's life from the command line, against real `steer daemon` processes:
`done`, `archive` (and `ls --all`), `rm`, and `export` into another daemon's Redis with
`import`."""

from __future__ import annotations

import json
from pathlib import Path

from redis import Redis

from daemon.keys import Keys
from tests.fixtures.redis import RedisServer
from tests.fixtures.steer_process import DaemonProcess, StartSteerDaemon, until
from tests.http.test_cli import ok, refused, root_status, run


def listed(steerd: DaemonProcess, *options: str) -> dict[str, dict[str, object]]:
    rows = [json.loads(line) for line in ok(steerd, "ls", "--json", *options).splitlines()]
    return {row["spec"]["id"]: row for row in rows}


def keys_of(redis_url: str, prefix: str, sid: str) -> list[str]:
    with Redis.from_url(redis_url, decode_responses=True) as redis:
        return list(redis.scan_iter(match=Keys(prefix).session_pattern(sid)))


def test_done_ends_a_running_session_without_a_veto(steerd: DaemonProcess, workdir: Path) -> None:
    sid = run(steerd, "[scenario:slow-tool] done", workdir, "--name", "finish-me")
    until(lambda: (workdir / "started").exists(), what="the tool to start")
    assert ok(steerd, "done", "finish-me").strip() == f"{sid}/root  done"
    assert root_status(steerd, sid) == "done" and steerd.session(sid)["status"] == "done"
    logs = ok(steerd, "logs", sid)
    assert "done by alice" in logs and "ended by alice" in logs and "vetoed" not in logs
    until(lambda: "interrupted by the operator" in ok(steerd, "show", sid), what="the result")
    assert not (workdir / "finished").exists()  # the command was stopped, not waited for
    assert "nothing to end" in refused(steerd, "done", sid)


def test_archive_hides_a_session_until_undone_and_survives_a_restart(
    start_steer_daemon: StartSteerDaemon, workdir: Path, redis_url: str, key_prefix: str
) -> None:
    steerd = start_steer_daemon(USER="alice")
    sid = run(steerd, "[scenario:slow-tool] archive", workdir)
    until(lambda: (workdir / "started").exists(), what="the tool to start")
    message = refused(steerd, "archive", sid)
    assert "root is running" in message and "--force" in message
    assert ok(steerd, "archive", sid, "--force").strip() == f"{sid}  archived"
    assert sid not in listed(steerd) and sid not in ok(steerd, "ls")
    row = listed(steerd, "--all")[sid]
    assert row["archived"] is True and row["status"] == "done"
    assert isinstance(row["memory_bytes"], int) and row["memory_bytes"] > 0
    assert "ended by alice" in ok(steerd, "logs", sid)  # still readable
    assert "is archived" in refused(steerd, "resume", sid)
    nudge = steerd.cli(sid, "are you there?", tool="nudge")
    assert nudge.returncode == 1 and "is archived" in nudge.stderr

    steerd.stop()
    steerd.start()
    with Redis.from_url(redis_url, decode_responses=True) as redis:
        assert redis.get(Keys(key_prefix).lease(sid)) is None  # not claimed at start
    assert listed(steerd, "--all")[sid]["archived"] is True
    assert ok(steerd, "archive", sid, "--undo").strip() == f"{sid}  back from the archive"
    assert listed(steerd)[sid]["archived"] is False

    def claimed() -> bool:
        with Redis.from_url(redis_url, decode_responses=True) as redis:
            return redis.get(Keys(key_prefix).lease(sid)) is not None

    until(claimed, what="the daemon to drive it again")
    assert "no agent of session" in refused(steerd, "pause", sid)  # done: driven, not held


def test_rm_deletes_every_key_and_refuses_a_running_session(
    steerd: DaemonProcess, workdir: Path, redis_url: str, key_prefix: str
) -> None:
    idle = run(steerd, "[scenario:short] rm", workdir, "--name", "rm-idle")
    until(lambda: root_status(steerd, idle) == "idle", what="the session to finish")
    busy = run(steerd, "[scenario:slow-tool] rm", workdir)
    until(lambda: (workdir / "started").exists(), what="the tool to start")

    assert ok(steerd, "rm", "rm-idle").startswith(f"{idle}  removed (")
    assert keys_of(redis_url, key_prefix, idle) == []
    assert "unknown session" in refused(steerd, "show", "rm-idle")
    assert "root is running" in refused(steerd, "rm", busy)
    assert keys_of(redis_url, key_prefix, busy) != []
    assert ok(steerd, "rm", busy, "--force").startswith(f"{busy}  removed (")
    assert keys_of(redis_url, key_prefix, busy) == []
    assert busy not in listed(steerd, "--all")
    # The name is free again.
    again = run(steerd, "[scenario:short] rm", workdir, "--name", "rm-idle")
    assert again != idle


def test_export_then_import_into_another_daemon_round_trips(
    steerd: DaemonProcess,
    start_steer_daemon: StartSteerDaemon,
    private_redis: RedisServer,
    workdir: Path,
    tmp_path: Path,
) -> None:
    sid = run(
        steerd,
        "[scenario:short] move",
        workdir,
        *("--name", "mover", "--check", "true", "--budget-tokens", "1000000"),
    )
    sent = steerd.cli(sid, "keep it short", tool="nudge")
    assert sent.returncode == 0, sent.stderr
    until(lambda: root_status(steerd, sid) == "done", what="the checks to pass")
    exported = ok(steerd, "export", sid)
    header, *rest = [json.loads(line) for line in exported.splitlines()]
    assert (header["kind"], header["format"], header["session"]) == ("header", 1, sid)
    kinds = {line["kind"] for line in rest}
    assert {"spec", "budget", "agent", "message", "frame"} <= kinds
    assert any(
        line["kind"] == "frame" and line["frame"]["event"]["type"] == "nudge.applied"
        for line in rest
    )
    export = tmp_path / "s.jsonl"
    export.write_text(exported)

    there = start_steer_daemon(
        USER="bob", STEER_HOME=str(tmp_path / "there"), STEER_REDIS_URL=private_redis.url
    )
    assert ok(there, "import", str(export)).strip() == sid
    assert "exists here" in refused(there, "import", str(export))
    assert sid not in listed(there)
    row = listed(there, "--all")[sid]
    assert row["imported"] is True and row["archived"] is True and row["status"] == "done"
    assert ok(there, "show", "mover") == ok(steerd, "show", "mover")
    assert ok(there, "logs", sid, "--json") == ok(steerd, "logs", sid, "--json")
    assert ok(there, "cost", sid) == ok(steerd, "cost", sid)
    again = ok(there, "export", sid).splitlines()
    assert again[1:] == exported.splitlines()[1:]  # all but the header's exported_at
    assert json.loads(again[0])["exported_at"] >= header["exported_at"]

    assert "imported sessions are read-only" in refused(there, "pause", sid)
    assert "imported sessions are read-only" in refused(there, "done", sid)
    nudge = there.cli(sid, "hello?", tool="nudge")
    assert nudge.returncode == 1 and "imported sessions are read-only" in nudge.stderr
    assert ok(there, "rm", sid).startswith(f"{sid}  removed (")
    assert sid not in listed(there, "--all") and sid in listed(steerd)
