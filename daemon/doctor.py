"""`steer doctor`: check an installation and say what to fix, one line per check.

Each line is `ok|warn|FAIL  what — fix`. The checks are pure functions over facts
(INFO and CONFIG replies, the daemon registry, a file mode, recent `model.reply`
events, disk figures); `gather` is the thin shell that collects the facts, and `run`
prints. Exit codes: 0 no FAIL (warnings are advice), 1 at least one FAIL.

Severity: anything that loses or evicts steer's state or leaves it unreachable is a
FAIL: an unreachable Redis, a `maxmemory-policy` that can evict keys and a cluster
that does not serve every slot (as `daemon.redis_checks`, whose pure checks this
reuses), a Redis that persists nothing (`steer daemon` only warns about that; the
doctor is stricter: a restart of Redis would lose every session), no daemon on this
home or an API that does not answer, a token file others can read, a nearly full disk
under the AOF. Everything else that is worth knowing is a warning.
"""

from __future__ import annotations

import json
import shutil
import stat
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from daemon import redis_checks
from daemon.catalog import model_info

Level = Literal["ok", "warn", "FAIL"]

#: How many of the latest model replies (across sessions) the cache check reads.
RECENT_REPLIES = 50
#: Frames read back per session to find them.
FRAMES_PER_SESSION = 200
#: Sessions looked at (the index is a hash: no order, so the cap is only a bound).
MAX_SESSIONS = 100
#: Below this mean share of the prior prompt read from cache, something rewrites prompts.
LOW_CACHE_SHARE = 0.8
DISK_FAIL_BYTES = 200 * 2**20
DISK_WARN_BYTES = 2 * 2**30


@dataclass(frozen=True, slots=True)
class Check:
    level: Level
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level:<4}  {self.what}" + (f" — {self.fix}" if self.fix else "")


@dataclass(frozen=True, slots=True)
class RedisFacts:
    """What the Redis steer uses answered; `error` set when it could not be reached."""

    url: str  # masked
    error: str | None = None
    #: INFO (default sections), as redis-py parses it.
    info: Mapping[str, Any] = field(default_factory=dict)
    #: CONFIG GET appendfsync / save; None where refused.
    appendfsync: str | None = None
    save: str | None = None
    #: CLUSTER INFO, for a cluster node.
    cluster_info: Mapping[str, Any] | None = None


# -- the checks (pure) ----------------------------------------------------------------


def redis_checks_for(facts: RedisFacts) -> list[Check]:
    """Reachable and version; persistence; eviction policy; cluster slot coverage."""
    if facts.error is not None:
        return [
            Check(
                "FAIL",
                f"Redis at {facts.url} unreachable: {facts.error}",
                "start it (embedded: `steer start` starts it), or fix STEER_REDIS_URL",
            )
        ]
    version = facts.info.get("redis_version", "?")
    checks = [Check("ok", f"Redis {version} at {facts.url}")]
    node = redis_checks.NodeFacts(facts.url, facts.info, save=facts.save)
    problems = {p.event: p for p in redis_checks.node_problems(node)}
    checks.append(_persistence(facts, problems))
    policy = facts.info.get("maxmemory_policy", "noeviction")
    if (evicting := problems.get("redis.evicting")) is not None:
        checks.append(_split("FAIL", evicting.line()))
    else:
        checks.append(Check("ok", f"maxmemory-policy {policy}: steer's keys are never evicted"))
    if facts.cluster_info is None:
        checks.append(Check("ok", "standalone Redis (not a cluster)"))
    elif (down := redis_checks.cluster_problem(facts.url, facts.cluster_info)) is not None:
        checks.append(_split("FAIL", down.line()))
    else:
        checks.append(
            Check("ok", f"Redis Cluster, all {redis_checks.SLOTS} slots served (cluster_state:ok)")
        )
    return checks


def _persistence(facts: RedisFacts, problems: Mapping[str, redis_checks.Problem]) -> Check:
    if (none := problems.get("redis.not_persistent")) is not None:
        return _split("FAIL", none.line())
    if (unknown := problems.get("redis.persistence_unknown")) is not None:
        return _split("warn", unknown.line())
    if str(facts.info.get("aof_enabled", "0")) != "1":
        return Check(
            "warn",
            f"persistence by RDB snapshots only (save {facts.save}): a crash of Redis loses "
            "what changed since the last one",
            "set appendonly yes",
        )
    fsync = facts.appendfsync or "unknown"
    if fsync == "no":
        return Check(
            "warn",
            "AOF on with appendfsync no: the OS decides when writes reach the disk",
            "set appendfsync everysec",
        )
    return Check("ok", f"persistence: AOF on, appendfsync {fsync}")


def _split(level: Level, sentence: str) -> Check:
    """A redis_checks sentence ("problem: fix") as a check."""
    what, sep, fix = sentence.partition(": ")
    return Check(level, what if sep else sentence, fix)


def daemons_check(registry: Mapping[str, Mapping[str, Any]], now: float) -> Check:
    """The daemons registered on this Redis whose registration has not expired."""
    live = {d: info for d, info in registry.items() if _float(info.get("expires_at")) > now}
    if not live:
        return Check(
            "warn",
            "no daemon registered on this Redis: nudges are kept but nothing runs the agents",
            "steer start",
        )
    listed = ", ".join(
        f"{did} ({info.get('url', '?')} on {info.get('host', '?')}"
        + (f", pid {info['pid']}" if "pid" in info else "")
        + ")"
        for did, info in sorted(live.items())
    )
    return Check("ok", f"{len(live)} daemon(s) on this Redis: {listed}")


def api_check(home: Path, running: bool, error: str | None) -> Check:
    if not running:
        return Check("FAIL", f"no daemon runs on {home}", "steer start")
    if error is not None:
        return Check(
            "FAIL",
            f"the daemon on {home} does not answer GET /v1/health: {error}",
            f"see {home / 'daemon.log'}; steer stop && steer start",
        )
    return Check("ok", "the daemon's API answers GET /v1/health with the token")


def token_check(path: Path, mode: int | None) -> Check:
    if mode is None:
        return Check("warn", f"no token file {path} (the daemon writes it at start)", "steer start")
    if mode & 0o077:
        return Check(
            "FAIL",
            f"token file {path} has mode {stat.S_IMODE(mode):04o}: others can steer your agents",
            f"chmod 600 {path}",
        )
    return Check("ok", f"token file mode {stat.S_IMODE(mode):04o}")


def model_checks(*, key_set: bool, base_url: str | None, model: str) -> list[Check]:
    checks = [
        Check("ok", "ANTHROPIC_API_KEY set: the real Claude API")
        if key_set
        else Check("ok", "no ANTHROPIC_API_KEY: agents run against the bundled simulator")
    ]
    if base_url:
        checks.append(Check("ok", f"ANTHROPIC_BASE_URL {base_url}"))
    if model_info(model).system_messages:
        checks.append(Check("ok", f"default model {model} takes mid-conversation system messages"))
    else:
        checks.append(
            Check(
                "warn",
                f"default model {model} takes no mid-conversation system messages: nudges go "
                "as operator notes in the next user turn",
                "STEER_MODEL=claude-opus-5-5",
            )
        )
    return checks


def cache_check(replies: Sequence[Mapping[str, Any]]) -> Check:
    """Over `model.reply` events (their `cache` reports), the mean share of the prior
    prompt read from cache and the reasons the API gave for misses."""
    shares = [
        float(r["cache"]["prior_cached_share"])
        for r in replies
        if isinstance(r.get("cache"), dict) and r["cache"].get("prior_cached_share") is not None
    ]
    misses = Counter(
        str(r["cache"]["cache_miss_reason"])
        for r in replies
        if isinstance(r.get("cache"), dict) and r["cache"].get("cache_miss_reason")
    )
    if not shares:
        return Check("ok", f"cache: no follow-up requests to judge among {len(replies)} replies")
    mean = sum(shares) / len(shares)
    reasons = ", ".join(f"{reason} ×{n}" for reason, n in misses.most_common())
    what = f"cache: {mean:.1%} of the prior prompt read from cache over {len(shares)} requests"
    what += f"; misses: {reasons}" if reasons else ""
    if mean < LOW_CACHE_SHARE:
        return Check("warn", what, "`steer logs SESSION` shows which requests missed and why")
    return Check("ok", what)


def disk_check(path: Path, free: int | None, total: int | None) -> Check:
    if free is None or total is None:
        return Check("warn", f"cannot read the disk space under {path}")
    where = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB under {path}"
    if free < DISK_FAIL_BYTES:
        return Check("FAIL", where + ": the AOF cannot grow", "free some space")
    if free < DISK_WARN_BYTES:
        return Check("warn", where, "free some space before the AOF fills it")
    return Check("ok", where)


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.level == "FAIL" for c in checks) else 0


def render(checks: Sequence[Check], *, as_json: bool) -> str:
    if as_json:
        return json.dumps({"ok": exit_code(checks) == 0, "checks": [asdict(c) for c in checks]})
    return "\n".join(c.line() for c in checks)


def recent_replies(frames: Sequence[Mapping[str, Any]], n: int = RECENT_REPLIES) -> list[Any]:
    """The events of the latest `n` `model.reply` frames, oldest first."""
    replies = [
        f
        for f in frames
        if isinstance(f.get("event"), dict) and f["event"].get("type") == "model.reply"
    ]
    replies.sort(key=lambda f: _float(f.get("ts")))
    return [f["event"] for f in replies[-n:]]


def _float(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0


# -- the shell --------------------------------------------------------------------------


def gather(home: Path) -> list[Check]:
    """Run every check against this installation (STEER_* settings, STEER_HOME)."""
    from redis import RedisCluster
    from redis.exceptions import RedisError

    from daemon.client import ClientError, DaemonClient
    from daemon.home_lock import daemon_running
    from daemon.keys import Keys
    from daemon.paths import TOKEN_FILE, configured_redis_url
    from daemon.resp import mask_url
    from daemon.settings import Settings

    settings = Settings()
    checks: list[Check] = []
    url = settings.redis_url or configured_redis_url()
    embedded = settings.redis_url is None
    redis_dir: Path = home / "redis"
    if url is None:
        checks.append(
            Check("FAIL", "no Redis configured", "set STEER_REDIS_URL, or `steer start` once")
        )
    else:
        facts, client = _redis_facts(url, mask_url(url))
        checks += redis_checks_for(facts)
        if client is not None:
            try:
                if facts.cluster_info is not None:
                    client.close()
                    client = RedisCluster.from_url(url, decode_responses=True)
                keys = Keys(settings.key_prefix)
                registry = _registry(client.hgetall(keys.daemons))
                checks.append(daemons_check(registry, time.time()))
                checks.append(cache_check(recent_replies(_frames(client, keys))))
                if not embedded and _local(url):
                    redis_dir = Path(str(client.config_get("dir").get("dir") or redis_dir))
            except (RedisError, OSError) as exc:
                checks.append(Check("warn", f"cannot read steer's keys: {exc}"))
            finally:
                client.close()

    running = daemon_running(home)
    error = None
    if running:
        try:
            DaemonClient(home, timeout=5.0).get("/v1/health")
        except ClientError as exc:
            error = str(exc)
    checks.append(api_check(home, running, error))
    token = home / TOKEN_FILE
    try:
        mode: int | None = token.stat().st_mode
    except OSError:
        mode = None
    checks.append(token_check(token, mode))

    checks += model_checks(
        key_set=settings.anthropic_api_key is not None,
        base_url=settings.anthropic_base_url,
        model=settings.model,
    )
    if embedded or _local(url or ""):
        existing = _existing(redis_dir)
        try:
            usage = shutil.disk_usage(existing)
            checks.append(disk_check(redis_dir, usage.free, usage.total))
        except OSError:
            checks.append(disk_check(redis_dir, None, None))
    return checks


def run(home: Path, *, as_json: bool) -> int:
    checks = gather(home)
    print(render(checks, as_json=as_json))
    return exit_code(checks)


def _redis_facts(url: str, masked: str) -> tuple[RedisFacts, Any]:
    from redis import Redis
    from redis.exceptions import RedisError, ResponseError

    client = Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        info = client.info()
    except (RedisError, OSError) as exc:
        client.close()
        return RedisFacts(
            masked, error=(str(exc).strip() or type(exc).__name__).splitlines()[0]
        ), None

    def config(name: str) -> str | None:
        try:
            return str(client.config_get(name).get(name) or "")
        except ResponseError:
            return None

    cluster_info = client.cluster("INFO") if str(info.get("cluster_enabled")) == "1" else None
    facts = RedisFacts(
        masked,
        info=info,
        appendfsync=config("appendfsync"),
        save=config("save"),
        cluster_info=cluster_info,
    )
    return facts, client


def _registry(raw: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out = {}
    for did, text in raw.items():
        try:
            info = json.loads(text)
        except ValueError:
            continue
        if isinstance(info, dict):
            out[did] = info
    return out


def _frames(client: Any, keys: Any) -> list[dict[str, Any]]:
    """The latest frames of up to MAX_SESSIONS sessions, parsed (others skipped)."""
    frames = []
    for sid in list(client.hkeys(keys.sessions))[:MAX_SESSIONS]:
        for _, fields in client.xrevrange(keys.events(sid), count=FRAMES_PER_SESSION):
            try:
                frame = json.loads(fields.get("frame", ""))
            except ValueError:
                continue
            if isinstance(frame, dict):
                frames.append(frame)
    return frames


def _local(url: str) -> bool:
    host = url.partition("://")[2].rpartition("@")[2].partition("/")[0].rpartition(":")[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or url.startswith("unix:")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
