"""Whether a Redis is one steer can use, checked once as the daemon starts.

steer keeps all its state in Redis and never expects a key to vanish. So it refuses
(one line, exit 2):
- a Redis Cluster that does not serve every slot (`cluster_state` not ok, or slots
  left unassigned): some sessions' keys would be unreachable;
- a node whose `maxmemory-policy` can evict keys: anything but `noeviction`. The
  volatile-* policies count too: they pick among keys with a TTL, and steer's leases
  and relayed answers have one, so a lease could vanish under a live owner;
- a cluster URL naming a database other than 0 (a cluster has only that one);
and warns (a log line each):
- a node that persists nothing (AOF off and no RDB save points): a restart of Redis
  loses every session and every queued nudge;
- a node whose persistence or eviction policy cannot be read (INFO or CONFIG refused,
  as managed Redis services may do, or the node unreachable).

Every node of a cluster is checked, replicas too: they become primaries on a failover.
`judge` and `cluster_problem` are pure (over INFO and CONFIG replies as redis-py parses
them); `check` is the shell that asks the nodes and logs or raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from daemon.redis_server import RedisUnavailable

log = logging.getLogger("steer.redis")

SLOTS = 16_384
#: How long a node has to answer each probe.
PROBE_TIMEOUT_S = 5.0


class RedisUnusable(RedisUnavailable):
    """A Redis the daemon must not run on; the message is one line saying why and how
    to fix it."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a Redis, and the nodes that have it."""

    fatal: bool
    #: The log event of a warning, say `redis.not_persistent`.
    event: str
    #: One sentence in two parts, the nodes in between (values a server sent may hold
    #: any character: no template to fill).
    head: str
    tail: str
    nodes: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.head}{_listed(self.nodes)}{self.tail}"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What one node answered; None where it refused to say."""

    address: str
    #: INFO (the default sections) as redis-py parses it.
    info: Mapping[str, Any] | None
    #: CONFIG GET save: the RDB save points ("" for none).
    save: str | None = None
    #: Why INFO or CONFIG could not be read, for the warning.
    refused: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    cluster: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [p.line() for p in self.problems if p.fatal]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.fatal]


def cluster_problem(address: str, cluster_info: Mapping[str, Any]) -> Problem | None:
    """What `CLUSTER INFO` on `address` says is wrong with the cluster, if anything."""
    state = str(cluster_info.get("cluster_state", "?"))
    assigned = _int(cluster_info.get("cluster_slots_assigned"))
    served = _int(cluster_info.get("cluster_slots_ok"))
    if state == "ok" and assigned == SLOTS:
        return None
    return Problem(
        fatal=True,
        event="redis.cluster_down",
        head="the Redis Cluster of ",
        tail=f" does not serve every slot (cluster_state:{state}, "
        f"{assigned} of {SLOTS} slots assigned, {served} ok): fix it first "
        f"(`redis-cli --cluster check {address}` says what is wrong)",
        nodes=(address,),
    )


def node_problems(facts: NodeFacts) -> list[Problem]:
    """What is wrong with one node, from what it answered."""
    where = (facts.address,)
    if facts.info is None:
        return [
            Problem(
                fatal=False,
                event="redis.unchecked",
                head="cannot read INFO on ",
                tail=f" ({facts.refused}): steer cannot check that "
                "it never evicts keys (maxmemory-policy noeviction) and persists them "
                "(appendonly yes); make sure it does",
                nodes=where,
            )
        ]
    problems = []
    policy = str(facts.info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        problems.append(
            Problem(
                fatal=True,
                event="redis.evicting",
                head="Redis at ",
                tail=f" has maxmemory-policy {policy}, which can evict steer's "
                "keys (sessions, leases, nudges): set `maxmemory-policy noeviction` "
                "(CONFIG SET maxmemory-policy noeviction, and in its redis.conf)",
                nodes=where,
            )
        )
    if not _int(facts.info.get("aof_enabled")):
        if facts.save is None:
            problems.append(
                Problem(
                    fatal=False,
                    event="redis.persistence_unknown",
                    head="Redis at ",
                    tail=" has AOF off and its RDB save points cannot be read "
                    f"({facts.refused or 'CONFIG GET refused'}; a managed Redis?): unless it "
                    "snapshots, a restart of Redis loses every session; prefer appendonly yes",
                    nodes=where,
                )
            )
        elif not facts.save.strip():
            problems.append(
                Problem(
                    fatal=False,
                    event="redis.not_persistent",
                    head="Redis at ",
                    tail=" persists nothing (appendonly no, no save points): a "
                    "restart of Redis loses every session and queued nudge; set appendonly yes",
                    nodes=where,
                )
            )
    return problems


def judge(nodes: Sequence[NodeFacts]) -> list[Problem]:
    """Every node's problems, one `Problem` per kind naming all the nodes that have it."""
    merged: dict[tuple[bool, str, str, str], list[str]] = {}
    for facts in nodes:
        for p in node_problems(facts):
            merged.setdefault((p.fatal, p.event, p.head, p.tail), []).extend(p.nodes)
    return [
        Problem(fatal=fatal, event=event, head=head, tail=tail, nodes=tuple(where))
        for (fatal, event, head, tail), where in merged.items()
    ]


# -- the shell ----------------------------------------------------------------------


async def check(url: str) -> Verdict:
    """Check the Redis at `url` (one node of a cluster is enough to name it): log each
    warning, raise RedisUnusable with one line if steer must not run on it."""
    verdict = await inspect(url)
    for problem in verdict.warnings:
        # The line is the message (capped at 2,000 characters, not 200 as a value).
        log.warning(f"{problem.event} {problem.line()}")
    if verdict.errors:
        raise RedisUnusable("; ".join(verdict.errors))
    return verdict


async def inspect(url: str) -> Verdict:
    """Whether `url` names a cluster node, and what is wrong with the Redis it names."""
    params = parse_url(url)
    address = _address(params)
    async with _probe(params) as probe:
        try:
            facts = await _facts(probe, address)
            cluster = bool(facts.info and _int(facts.info.get("cluster_enabled")))
            if not cluster:
                return Verdict(cluster=False, problems=judge([facts]))
            if _int(params.get("db")):
                raise RedisUnusable(
                    f"{address} is a Redis Cluster node, and a cluster has only database 0: "
                    "drop the /N from STEER_REDIS_URL"
                )
            down = cluster_problem(address, await probe.cluster("INFO"))
            if down is not None:
                return Verdict(cluster=True, problems=[down])
            others = [
                node
                for node, about in (await probe.cluster("NODES")).items()
                if "myself" not in about.get("flags", "")
            ]
        except (RedisError, OSError) as exc:
            raise RedisUnusable(f"cannot use Redis at {address}: {_first_line(exc)}") from exc
    found = [facts]
    for node in others:
        host, _, port = node.rpartition(":")
        found.append(
            await _node_facts({**params, "host": host or params["host"], "port": int(port)})
        )
    return Verdict(cluster=True, problems=judge(found))


async def _node_facts(params: Mapping[str, Any]) -> NodeFacts:
    """Another node's facts; an unreachable one is reported, not fatal (a failed
    replica does not stop a cluster that `cluster_state:ok` says serves every slot)."""
    address = _address(params)
    try:
        async with _probe(params) as probe:
            return await _facts(probe, address)
    except (RedisError, OSError) as exc:
        return NodeFacts(address, None, refused=_first_line(exc))


async def _facts(probe: Redis, address: str) -> NodeFacts:
    try:
        info: dict[str, Any] = await probe.info()
    except ResponseError as exc:  # refused (ACL, a renamed command); not a dead node
        return NodeFacts(address, None, refused=_first_line(exc))
    if _int(info.get("aof_enabled")):
        return NodeFacts(address, info)  # the save points do not matter then
    try:
        config = await probe.config_get("save")
    except ResponseError as exc:
        return NodeFacts(address, info, refused=_first_line(exc))
    return NodeFacts(address, info, save=str(config.get("save") or ""))


def _probe(params: Mapping[str, Any]) -> Redis:
    """One connection, no retries, short timeouts: a check answers for itself, at once."""
    pool = ConnectionPool(
        **{k: v for k, v in params.items() if k != "db"},  # a cluster node has only db 0
        socket_timeout=PROBE_TIMEOUT_S,
        socket_connect_timeout=PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return Redis.from_pool(pool)


def _address(params: Mapping[str, Any]) -> str:
    return str(
        params.get("path") or f"{params.get('host', 'localhost')}:{params.get('port', 6379)}"
    )


def _listed(nodes: Sequence[str]) -> str:
    return nodes[0] if len(nodes) == 1 else ", ".join(nodes[:-1]) + f" and {nodes[-1]}"


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
