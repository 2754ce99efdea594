"""The daemon's Redis clients: one pool for the agents' writes, another for reads.

Both pools are `BlockingConnectionPool`s of at most `max_connections` each
(STEER_REDIS_MAX_CONNECTIONS): a caller that finds its pool busy waits for a
connection rather than failing with "Too many connections".

- `writes`: the supervisor's store (agents' commits, the nudge consumer's blocking
  XREADGROUP, nudges sent through the API). A writer waits for a connection as long
  as it takes: connections come back as soon as a command ends, and a commit that
  failed for want of one would have to be retried.
- `reads`: the API's event reads and the hub's replays. A reader waits at most
  `READ_WAIT_S`, then is answered `unavailable`.

They are separate so that however many clients read at once, an agent's commit never
waits behind them.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis

#: Connections per pool, unless STEER_REDIS_MAX_CONNECTIONS says otherwise.
DEFAULT_MAX_CONNECTIONS = 64
#: How long a reader waits for a free connection of its pool. Generous: under a crowd
#: (hundreds of subscriptions replaying at once) a wait of seconds is load, not an outage,
#: and a Redis that is down refuses connections at once anyway.
READ_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class RedisClients:
    writes: Redis
    reads: Redis

    @classmethod
    def open(cls, url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> RedisClients:
        return cls(
            writes=_client(url, max_connections, wait_s=None),
            reads=_client(url, max_connections, wait_s=READ_WAIT_S),
        )

    async def aclose(self) -> None:
        await self.writes.aclose()
        await self.reads.aclose()


def _client(url: str, max_connections: int, *, wait_s: float | None) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, decode_responses=True
    )
    return Redis.from_pool(pool)
