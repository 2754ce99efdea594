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

On a Redis Cluster (the URL names any of its nodes; `daemon.redis_checks` tells which
kind it is) both are `ClusterClient`s: redis-py's cluster client, which sends each
command to the node of its keys' slot and follows MOVED and ASK. redis-py caps the
connections per node but fails a command that finds them all busy, so a
`ClusterClient` lets at most `max_connections` commands (or pipelines) run at once and
makes the others wait, as the pools do; each holds at most one connection per node at
a time, so no node's cap is ever reached.

Pub/Sub goes through `subscriber(client)`. steer's channels are classic ones, which a
cluster broadcasts to every node, so one plain connection to any node hears them all;
redis-py's own ClusterPubSub would also watch the slot map and borrow a connection
from a node's pool for as long as it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError

#: Connections per pool, unless STEER_REDIS_MAX_CONNECTIONS says otherwise.
DEFAULT_MAX_CONNECTIONS = 64
#: How long a reader waits for a free connection of its pool. Generous: under a crowd
#: (hundreds of subscriptions replaying at once) a wait of seconds is load, not an outage,
#: and a Redis that is down refuses connections at once anyway.
READ_WAIT_S = 30.0
#: How long a command (or a connect) may go unanswered before it fails: a black-holed
#: or silently dropped connection then fails, and is made anew, instead of hanging
#: forever. Set here because redis-py's default changed (None before 8.0, 5 s since).
#: A command that blocks in Redis (BLPOP, XREAD BLOCK) must block for less.
SOCKET_TIMEOUT_S = 5.0

#: Whether this task already holds a `ClusterClient` permit: redis-py's cluster pipeline
#: re-sends redirected commands one by one through the client, inside the pipeline's
#: own turn, and waiting for a second permit there could wait forever.
_HOLDING: ContextVar[bool] = ContextVar("steer_cluster_permit", default=False)


class ClusterClient(RedisCluster):
    """A `RedisCluster` whose callers wait for their turn instead of failing with
    MaxConnectionsError; built by `cluster_client`."""

    def __init__(self, *args: Any, seed_url: str, wait_s: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The URL it was opened with: it names one node, and the credentials for all.
        self.url = seed_url
        self.wait_s = wait_s
        self.max_connections: int = kwargs["max_connections"]
        self._permits = asyncio.Semaphore(self.max_connections)
        self._next_node = itertools.count()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    async def initialize(self, *args: Any, **kwargs: Any) -> ClusterClient:
        # Learning the slot map takes connections too (a pipeline does it outside a turn).
        async with self.turn():
            await super().initialize(*args, **kwargs)
        return self

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # raises as redis-py does
        # mypy sees an abstract member in redis-py's typing Protocols; there is none.
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the `max_connections` permits (once per task) while inside."""
        if _HOLDING.get():
            yield
            return
        try:
            async with asyncio.timeout(self.wait_s):
                await self._permits.acquire()
        except TimeoutError as exc:
            # What a BlockingConnectionPool raises: the API answers `unavailable`.
            raise RedisConnectionError("No connection available.") from exc
        holding = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(holding)
            self._permits.release()

    def undecoded(self) -> ClusterClient:
        """A client like this one whose replies stay bytes (the caller closes it)."""
        return cluster_client(
            self.url, self.max_connections, wait_s=self.wait_s, decode_responses=False
        )

    def subscriber(self) -> PubSub:
        """A Pub/Sub connection to one node, the next one in turn at each call, so that
        a listener that lost its node comes back on another."""
        nodes = sorted(self.get_nodes(), key=lambda node: node.name)
        kwargs = parse_url(self.url)
        if nodes:
            node = nodes[next(self._next_node) % len(nodes)]
            kwargs |= {"host": node.host, "port": int(node.port)}
        # A pool of its own: PubSub.aclose() closes the connection it holds.
        pool = ConnectionPool(**kwargs, decode_responses=True)
        return PubSub(pool, ignore_subscribe_messages=True)


class _WaitingPipeline(ClusterPipeline):
    """A cluster pipeline that runs in one turn of its client."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, ClusterClient)
        async with client.turn():
            return await super().execute(raise_on_error, allow_redirections)


def cluster_client(
    url: str, max_connections: int, *, wait_s: float | None, decode_responses: bool = True
) -> ClusterClient:
    """A cluster client that starts from the node `url` names and learns the others."""
    client = ClusterClient.from_url(
        url,
        seed_url=url,
        wait_s=wait_s,
        max_connections=max_connections,
        decode_responses=decode_responses,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )
    assert isinstance(client, ClusterClient)
    return client


#: What the store is given: a client of one Redis or of a cluster.
AnyRedis = Redis | ClusterClient


@dataclass(frozen=True, slots=True)
class RedisClients:
    writes: AnyRedis
    reads: AnyRedis

    @classmethod
    def open(
        cls, url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, cluster: bool = False
    ) -> RedisClients:
        """Clients of the Redis at `url`; `cluster`: of the Redis Cluster it is a node of."""
        if cluster:
            return cls(
                writes=cluster_client(url, max_connections, wait_s=None),
                reads=cluster_client(url, max_connections, wait_s=READ_WAIT_S),
            )
        return cls(
            writes=_client(url, max_connections, wait_s=None),
            reads=_client(url, max_connections, wait_s=READ_WAIT_S),
        )

    async def aclose(self) -> None:
        await self.writes.aclose()
        await self.reads.aclose()


def subscriber(redis: AnyRedis) -> PubSub:
    """A Pub/Sub connection for steer's (classic, broadcast) channels."""
    if isinstance(redis, ClusterClient):
        return redis.subscriber()
    return redis.pubsub(ignore_subscribe_messages=True)


def undecoded(redis: AnyRedis) -> AnyRedis:
    """A client like `redis` whose replies stay bytes; its caller closes it."""
    if isinstance(redis, ClusterClient):
        return redis.undecoded()
    pool = redis.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    # from_pool: the new client owns its pool, so its aclose() disconnects it.
    return type(redis).from_pool(type(pool)(connection_class=pool.connection_class, **kwargs))


def _client(url: str, max_connections: int, *, wait_s: float | None) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_s,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )
    return Redis.from_pool(pool)
