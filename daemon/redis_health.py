"""Whether the daemon can reach Redis, and bringing the embedded Redis back.

`RedisWatch` is the sans-I/O part: fed the outcome of each ping, it keeps the
`RedisStatus` the API reports (up or down, since when, the last error) and says when a
restart may be tried. `RedisMonitor` is its shell: every `INTERVAL_S` it pings Redis
(on a cluster, every primary) over a connection of its own, with a short timeout, so
that a busy pool never passes for an outage; for the embedded Redis it is given `revive`
(`daemon.redis_server.revive_embedded`), which it runs in a thread when a ping fails.

Restarts back off so that a server that dies right after each start is not restarted
in a tight loop: a failed ping restarts it at once, but after each attempt the next
one waits twice as long as the last wait did (from `RESTART_MIN_S` up to
`RESTART_MAX_S`); the wait starts over once Redis has stayed up for `CALM_S`. Each
attempt is one log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from protocol.sessions import SessionSummary

log = logging.getLogger("steer.redis")

INTERVAL_S = 1.0
#: A ping unanswered for this long counts as Redis down.
PING_TIMEOUT_S = 1.0
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
#: How long Redis must stay up before restarts are tried at once again.
CALM_S = 60.0


@dataclass(frozen=True, slots=True)
class RedisStatus:
    up: bool
    #: When Redis was last seen to come up or go down (unix time).
    since: float
    #: The last failure to reach it, kept once it is back; None if there was none.
    error: str | None = None


class RedisWatch:
    """Redis's status as the pings tell it, and when the next restart may be tried."""

    def __init__(self, now: float) -> None:
        self.status = RedisStatus(up=True, since=now)
        self._restart_at = 0.0
        self._wait = RESTART_MIN_S

    def ping_ok(self, now: float) -> bool:
        """A ping was answered; whether Redis was down until now."""
        if self.status.up:
            if now - self.status.since >= CALM_S:
                self._wait = RESTART_MIN_S
            return False
        self.status = RedisStatus(up=True, since=now, error=self.status.error)
        return True

    def ping_failed(self, now: float, error: str) -> bool:
        """A ping failed with `error`; whether Redis was up until now."""
        was_up = self.status.up
        self.status = RedisStatus(up=False, since=now if was_up else self.status.since, error=error)
        return was_up

    def restart_due(self, now: float) -> bool:
        return not self.status.up and now >= self._restart_at

    def restart_tried(self, now: float) -> float:
        """A restart is being tried now; how long until the next one may be."""
        wait = self._wait
        self._restart_at = now + wait
        self._wait = min(wait * 2, RESTART_MAX_S)
        return wait


class RedisMonitor:
    """Pings Redis in a task of its own; restarts the embedded one through `revive`.

    `revive()` restarts the server if its process is gone and returns whether it did;
    it blocks (it waits for the server to load its AOF), so it runs in a thread.
    """

    def __init__(
        self,
        url: str,
        *,
        revive: Callable[[], bool] | None = None,
        cluster: bool = False,
    ) -> None:
        # One connection, no retries: a ping answers for itself, at once. On a cluster,
        # a connection per node, and Redis is up while every primary answers (each
        # serves its share of the sessions).
        self._probe: Redis | RedisCluster
        if cluster:
            self._probe = RedisCluster.from_url(
                url,
                socket_timeout=PING_TIMEOUT_S,
                socket_connect_timeout=PING_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        else:
            self._probe = Redis.from_url(
                url,
                socket_timeout=PING_TIMEOUT_S,
                socket_connect_timeout=PING_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
                single_connection_client=True,
            )
        self._revive = revive
        self._watch = RedisWatch(time.time())
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> RedisStatus:
        return self._watch.status

    @property
    def stale_since(self) -> float | None:
        """When Redis went down, while it is: what the daemon holds in memory (summaries)
        is as of then."""
        status = self._watch.status
        return None if status.up else status.since

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._probe.aclose()

    async def _run(self) -> None:
        while True:
            if not await self._check():
                await asyncio.sleep(INTERVAL_S)

    async def _check(self) -> bool:
        """Ping once (and restart if due); whether a restart was tried."""
        error = await self._ping()
        now = time.time()
        if error is None:
            down_since = self.status.since
            if self._watch.ping_ok(now):
                log.warning("redis.up down_for_s=%.2f", now - down_since)
            return False
        if self._watch.ping_failed(now, error):
            log.warning("redis.down error=%s", error)
        if self._revive is None or not self._watch.restart_due(now):
            return False
        retry_in = self._watch.restart_tried(now)
        try:
            started = await asyncio.to_thread(self._revive)
        except Exception as exc:  # logged and retried later: the monitor must go on
            first_line = (str(exc) or type(exc).__name__).splitlines()[0]
            log.error("redis.restart_failed retry_in=%.0fs error=%s", retry_in, first_line)
            return False
        if started:
            log.warning("redis.restarted after_s=%.2f", time.time() - self.status.since)
        return True

    async def _ping(self) -> str | None:
        """None if Redis answered, else what went wrong."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S * 2):
                if isinstance(self._probe, RedisCluster):
                    await self._probe.ping(target_nodes=RedisCluster.PRIMARIES)
                else:
                    await self._probe.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__
        return None


def stale(summaries: list[SessionSummary], since: float | None) -> list[SessionSummary]:
    """Session summaries as served while Redis is down since `since` (None: it is up)."""
    if since is None:
        return summaries
    return [summary.model_copy(update={"stale_since": since}) for summary in summaries]
