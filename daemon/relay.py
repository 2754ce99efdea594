"""The relay: what one daemon carries to and from the others over Redis, so that any
daemon's API and dashboard serve every session, wherever it runs.

- Verbs. A verb on a session owned elsewhere is appended to that session's control
  stream with a reply key, and the session id is published on the relay channel. The
  owner runs it exactly as its own API would and pushes the `Ack` to the reply key;
  the caller waits for it (BLPOP) and answers its client with the same result or
  error. If no daemon answers in time (the owner died and the session is being taken
  over) the caller answers `unavailable`; a new owner skips verbs older than its claim,
  since their callers have given up.
- Events. Every fenced write that adds frames publishes `<sid> <last seq>` on the
  events channel (inside the same script). Each daemon follows it for the sessions it
  does not own and its subscribers watch: one read of the new frames per session,
  handed to the local hub, whatever the number of subscribers.

Daemons are never reached directly (they listen on loopback only): Redis is the one
place they all reach.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from pydantic import JsonValue, ValidationError
from redis.exceptions import RedisError

from daemon.aio import raise_if_cancelled
from daemon.errors import CommandError
from daemon.store import Store
from protocol.commands import COMMAND_ADAPTER, Ack, Command, ErrorInfo
from protocol.envelope import Frame

log = logging.getLogger("steer.relay")

#: How long a caller waits for the owner's answer.
FORWARD_TIMEOUT_S = 10.0
#: The longest one BLPOP blocks (below the clients' socket timeout).
BLPOP_S = 2.0
#: How long an answer waits for its caller.
REPLY_TTL_S = 60
#: Entries kept in a session's control stream (verbs are answered in well under that).
CONTROL_MAXLEN = 1_000
RETRY_DELAY_S = 0.5

Execute = Callable[[Command], Awaitable[JsonValue]]
FrameSink = Callable[[list[Frame]], None]


class Relay:
    def __init__(
        self,
        store: Store,
        *,
        owned: Callable[[], Collection[str]],
        watched: Callable[[str], bool] = lambda _: False,
        publish: FrameSink | None = None,
    ) -> None:
        self._store = store
        self._owned = owned
        #: Whether local subscribers want a session's frames (set once the hub exists).
        self.watched = watched
        self._publish = publish
        #: Runs a verb for a session this daemon owns (set once the API exists).
        self.execute: Execute | None = None
        #: Per owned session: the control stream id read up to.
        self._cursors: dict[str, str] = {}
        #: Per watched remote session: the last seq handed to the hub.
        self._relayed: dict[str, int] = {}
        #: Remote sessions being read, and whether news came meanwhile.
        self._reading: dict[str, bool] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Future[None]] = set()

    # -- caller side ------------------------------------------------------------

    async def forward(self, sid: str, command: Command) -> JsonValue:
        """Have the session's owner run `command`; its result, or its refusal raised."""
        keys, redis = self._store.keys, self._store.redis
        reply = keys.reply(secrets.token_hex(8))
        entry = {"command": command.model_dump_json(), "reply": reply}
        await redis.xadd(keys.control(sid), entry, maxlen=CONTROL_MAXLEN, approximate=True)
        await redis.publish(keys.relay, sid)
        deadline = time.monotonic() + FORWARD_TIMEOUT_S
        answer = None
        # Short BLPOPs: one blocked longer than the clients' socket timeout would fail.
        while answer is None and (left := deadline - time.monotonic()) > 0.01:
            answer = await redis.blpop([reply], timeout=min(BLPOP_S, left))
        if answer is None:
            raise CommandError(
                "unavailable",
                f"the daemon that runs {sid} did not answer within {FORWARD_TIMEOUT_S:g} s "
                "(it may be restarting; another daemon takes over within the lease TTL)",
            )
        ack = Ack.model_validate_json(answer[1])
        if ack.error is not None:
            raise CommandError(ack.error.code, ack.error.message)
        return ack.result

    # -- owner side -------------------------------------------------------------

    def open(self, sid: str, last: str | None) -> None:
        """Start answering a session's verbs after `last`, the id of its control stream's
        last entry when it was claimed (None: empty); older ones were given up."""
        self._cursors[sid] = last or "0-0"

    def close(self, sid: str) -> None:
        self._cursors.pop(sid, None)

    async def run(self) -> None:
        """Listen to the relay and events channels until cancelled."""
        keys = self._store.keys
        while True:
            pubsub = self._store.subscriber()
            try:
                await pubsub.subscribe(keys.relay, keys.committed)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message.get("data")
                    if not isinstance(data, str):
                        continue
                    if message.get("channel") == keys.relay:
                        self._spawn(self._answer(data), data)
                    else:
                        sid, _, first = data.partition(" ")
                        if sid not in self._owned() and self.watched(sid):
                            self._spawn(self._catch_up(sid, int(first or 1)), sid)
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                log.warning("relay.down error=%s", exc)
                await asyncio.sleep(RETRY_DELAY_S)
            finally:
                for task in self._tasks:
                    task.cancel()
                await pubsub.aclose()

    def _spawn(self, work: Awaitable[None], sid: str) -> None:
        async def once() -> None:
            try:
                await work
            except (RedisError, OSError) as exc:
                log.warning("relay.failed sid=%s error=%s", sid, exc)

        task = asyncio.ensure_future(once())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, sid: str) -> None:
        """Run the verbs waiting in an owned session's control stream, in order."""
        if sid not in self._cursors or sid in self._busy or self.execute is None:
            return
        self._busy.add(sid)
        try:
            key = self._store.keys.control(sid)
            while entries := await self._store.redis.xrange(key, min=f"({self._cursors[sid]}"):
                for entry_id, fields in entries:
                    self._cursors[sid] = entry_id
                    await self._run_one(fields)
        finally:
            self._busy.discard(sid)

    async def _run_one(self, fields: dict[str, str]) -> None:
        reply = fields.get("reply", "")
        if not reply.startswith(self._store.keys.reply("")):
            return  # not one of ours: never write where an entry says
        try:
            command = COMMAND_ADAPTER.validate_json(fields.get("command", ""))
            assert self.execute is not None
            ack = Ack(id=command.id, ok=True, result=await self.execute(command))
        except ValidationError as exc:
            ack = _refusal("invalid", f"a relayed command that is not valid: {exc.error_count()}")
        except CommandError as exc:
            ack = _refusal(exc.code, exc.message)
        except (RedisError, OSError):
            raise
        except Exception as exc:  # the caller gets an answer either way
            log.exception("relay.command_failed")
            ack = _refusal("internal", f"the owner failed: {type(exc).__name__}")
        redis = self._store.redis
        async with redis.pipeline(transaction=False) as pipe:
            pipe.rpush(reply, ack.model_dump_json())
            pipe.expire(reply, REPLY_TTL_S)
            await pipe.execute()

    # -- events of sessions owned elsewhere ---------------------------------------

    async def _catch_up(self, sid: str, first: int) -> None:
        """Frames `first`.. were committed elsewhere: read them (and any missed before,
        back to the last relayed) and hand them to the hub, which skips repeats and
        resyncs its subscribers over gaps. News that comes during a read makes the
        same task read again, so the last commit is never left behind."""
        since = min(self._relayed.get(sid, first - 1), first - 1)
        self._relayed[sid] = since
        if sid in self._reading:
            self._reading[sid] = True  # read again once the read under way is done
            return
        if self._publish is None:
            return
        self._reading[sid] = False
        try:
            while True:
                frames = await self._store.read_events(sid, since=self._relayed[sid])
                if frames:
                    self._relayed[sid] = frames[-1].seq
                    self._publish(frames)
                if not self._reading[sid]:
                    return
                self._reading[sid] = False
        finally:
            self._reading.pop(sid, None)


def _refusal(code: Any, message: str) -> Ack:
    return Ack(id=None, ok=False, error=ErrorInfo(code=code, message=message))
