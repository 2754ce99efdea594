"""Redis down: commands that need it are answered `unavailable` (the others still
work), a subscription that cannot be replayed is resynced, and all is well again
once Redis is back."""

from __future__ import annotations

from pathlib import Path

from daemon.redis_server import RedisServer
from protocol.sessions import SessionSpec
from protocol.websocket import Resync
from tests.api.support import consecutive
from tests.fixtures.api import MakeDaemon
from tests.fixtures.daemon import is_event, is_status


async def test_redis_down_is_unavailable_and_then_recovers(
    make_daemon: MakeDaemon, private_redis: RedisServer, tmp_path: Path
) -> None:
    daemon = await make_daemon(redis_url=private_redis.url)
    async with daemon.ws() as ws:
        spec = SessionSpec.model_validate(
            await ws.ok("start", task="[scenario:short] outage", workdir=str(tmp_path))
        )
        await ws.ok("subscribe", sessions=[spec.id])
        before = await ws.frames_until(is_status("idle"))
        await ws.ok("unsubscribe", sessions="*")

        private_redis.kill()
        assert [s["spec"]["id"] for s in await ws.ok("sessions")] == [spec.id]  # type: ignore[index, union-attr]
        for type, fields in [
            ("nudge", {"session": spec.id, "text": "while Redis is down"}),
            ("subscribe", {"sessions": [spec.id], "replay": False}),
        ]:
            ack = await ws.command(type, **fields)
            assert ack.error is not None and ack.error.code == "unavailable", ack
        # With replay, the ack says where the subscription starts; the replay fails
        # and the subscription is dropped with a resync at that seq.
        assert await ws.ok("subscribe", sessions=[spec.id], since={spec.id: 2}) == {spec.id: 2}
        resync = await ws.next()
        assert isinstance(resync, Resync) and resync.session == spec.id and resync.seq == 2

        private_redis.restart()
        await ws.ok("subscribe", sessions=[spec.id], since={spec.id: before[-1].seq})
        await ws.ok("nudge", session=spec.id, text="Redis is back")
        after = await ws.frames_until(is_event("nudge.delivered"))
        assert consecutive(before + after)
