"""Fenced, all-or-nothing writes of one session, run inside Redis as Lua scripts.

Redis does not roll back a MULTI when a command fails at EXEC time, and a script that
errors half-way keeps what it wrote too. So every write of a session goes through
`WRITE`, which first checks everything that could make it fail and only then writes:

- the session's lease still holds this daemon's token (`<daemon id>:<epoch>`), so a
  stale owner's write is refused (`NotOwner`), whatever it was about to write;
- the event stream's last seq is the one the writer numbered its frames after, and
  each conversation has the length the writer thinks, so nothing is appended twice
  (`Conflict`);
- every key an op touches is of the op's type or absent (`BadKey`).

A write that acknowledges nudge entries also trims the nudge stream of every entry
all its groups have read and acknowledged (never an unread or pending one), in the same
script, so no XADD can land between the look at the groups and the trim.

A write that adds frames also publishes `<sid> <first seq>` (`Batch.announce`), so
daemons that do not own the session can relay them to their subscribers.

The ops are a short whitelist; `Batch` (pure, no I/O) builds the keys and arguments.
All keys of a batch must be the session's (one hash tag), so one script covers them on
a standalone Redis and on a Cluster alike. The lease scripts (claim, renew, release)
and the fenced nudge read live here too: they are the ownership protocol's atomic parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from daemon.keys import NUDGE_CONSUMER, NUDGE_GROUP

#: Redis' Lua stack allows a few thousand arguments per call; ops are split below it.
MAX_OP_ARGS = 1_000


class FenceError(Exception):
    """A fenced write or read that Redis refused before writing anything."""


class NotOwner(FenceError):
    """This daemon no longer holds the session's lease: stop driving it at once."""


class Conflict(FenceError):
    """The stored session moved on without this writer (its seq or a conversation)."""


class BadKey(FenceError):
    """A key the write needs holds a value of another type."""


_WRITE = """
-- Whether stream id a < b, exactly: ids are canonical `<ms>-<seq>` decimals, so the
-- longer number is the larger, and of two as long the lexically larger.
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
-- Drop the entries of a stream every group has read and acknowledged: those before
-- its oldest pending entry and before its last delivered one (kept: the lowest id
-- XTRIM MINID may keep without arithmetic on ids). An unread entry comes after the
-- last delivered id, a pending one at or after the oldest pending: neither goes.
-- O(1) per group (XINFO GROUPS, the XPENDING summary) plus the entries dropped.
local function trim_acked(key)
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) ~= 'table' or groups.err or #groups == 0 then return end
  local floor = nil
  for _, group in ipairs(groups) do
    local g = {}
    for j = 1, #group, 2 do g[group[j]] = group[j + 1] end
    local keep = g['last-delivered-id']
    if g['pending'] > 0 then
      local oldest = redis.call('XPENDING', key, g['name'])[2]
      if id_less(oldest, keep) then keep = oldest end
    end
    if floor == nil or id_less(keep, floor) then floor = keep end
  end
  redis.call('XTRIM', key, 'MINID', floor)
end
local token, expected = ARGV[1], ARGV[2]
if redis.call('GET', KEYS[1]) ~= token then
  return redis.error_reply('FENCED the session is not owned by ' .. token)
end
if expected ~= '' then
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local last = 0
  if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
  if last ~= tonumber(expected) then
    return redis.error_reply('CONFLICT events at seq ' .. last .. ', expected ' .. expected)
  end
end
local i = 5
for _ = 1, tonumber(ARGV[i]) do
  local key, n = KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  local len = redis.call('LLEN', key)
  if len ~= n then
    return redis.error_reply('CONFLICT ' .. key .. ' has ' .. len .. ' entries, expected ' .. n)
  end
  i = i + 2
end
i = i + 1
local first = i
local types = {RPUSH='list', SET='string', HSET='hash', HDEL='hash', SADD='set',
                XADD='stream', XACK='stream', TRIMACKED='stream'}
while i <= #ARGV do
  local key = KEYS[tonumber(ARGV[i + 1])]
  local want = types[ARGV[i]]
  if want == nil then return redis.error_reply('BADKEY unknown op ' .. ARGV[i]) end
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return redis.error_reply('BADKEY ' .. key .. ' holds a ' .. have .. ', not a ' .. want)
  end
  i = i + 3 + tonumber(ARGV[i + 2])
end
i = first
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  if ARGV[i] == 'TRIMACKED' then
    pcall(trim_acked, KEYS[tonumber(ARGV[i + 1])])  -- a failed trim keeps the write
  else
    redis.call(ARGV[i], KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
  end
  i = i + 3 + n
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
"""

#: KEYS: lease, epoch, nudges, spec, archived. ARGV: daemon id, ttl ms, mode. Returns
#: the new token or nil. Modes: `new` (a session id nobody ever used), `orphan` (no live
#: lease), `mine` (no live lease, or one left by this same daemon id before it
#: restarted). An existing session is never claimed while archived, nor once removed
#: (no spec): a daemon that listed it before `steer rm` cannot bring it back.
_CLAIM = f"""
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[3] ~= 'mine' or string.match(current, '^(.*):%d+$') ~= ARGV[1] then
    return false
  end
elseif ARGV[3] == 'new' and redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
if ARGV[3] ~= 'new' then
  if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[4]) == 0 then
    return false
  end
end
local token = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.pcall('XGROUP', 'CREATE', KEYS[3], '{NUDGE_GROUP}', '0', 'MKSTREAM')
return token
"""

#: KEYS: lease. ARGV: token, ttl ms. 1 if renewed, 0 if the lease is gone or another's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: KEYS: lease, archived. ARGV: the owner's token ('' if none), the archive record.
#: Archives the session unless a daemon other than the caller holds its lease (0); the
#: caller's lease is dropped with it, so its last writes are fenced from now on.
_ARCHIVE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
if current then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

#: KEYS: lease. ARGV: token. Lets another daemon claim the session at once.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: KEYS: lease, nudges. ARGV: token, start id (`>` for new entries), count.
_READ_NUDGES = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the session is not owned by ' .. ARGV[1])
end
return redis.call('XREADGROUP', 'GROUP', '{NUDGE_GROUP}', '{NUDGE_CONSUMER}', 'COUNT', ARGV[3],
                  'STREAMS', KEYS[2], ARGV[2])
"""


class Script:
    """A Lua script run by its SHA, loaded on the node that lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, redis: Any, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            try:
                return await redis.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await redis.eval(self.source, len(keys), *keys, *args)
        except ResponseError as exc:
            raise _translate(exc) from exc

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[str | int]) -> None:
        """Add a call to a pipeline (EVAL: the SHA may not be loaded yet)."""
        pipe.eval(self.source, len(keys), *keys, *args)


WRITE = Script(_WRITE)
CLAIM = Script(_CLAIM)
RENEW = Script(_RENEW)
RELEASE = Script(_RELEASE)
ARCHIVE = Script(_ARCHIVE)
READ_NUDGES = Script(_READ_NUDGES)


def _translate(exc: ResponseError) -> Exception:
    message = str(exc)
    for prefix, kind in (("FENCED", NotOwner), ("CONFLICT", Conflict), ("BADKEY", BadKey)):
        if message.startswith(prefix):
            return kind(message[len(prefix) :].strip())
    return exc


@dataclass
class Batch:
    """The writes of one session, checked and applied as one by `WRITE`.

    `lease` and `events` are always KEYS[1] and KEYS[2]; every other key gets an index
    the first time an op names it.
    """

    lease: str
    events: str
    #: The event stream's last seq the frames were numbered after (None: no frames).
    after_seq: int | None = None
    #: Published once the batch is written: (channel, message), say new frames' news.
    announce: tuple[str, str] | None = None
    keys: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [self.lease, self.events]

    def expect_len(self, key: str, length: int) -> None:
        """Refuse the batch unless the list `key` holds exactly `length` entries."""
        self.checks += [str(self._index(key)), str(length)]

    def rpush(self, key: str, values: Sequence[str]) -> None:
        self._op("RPUSH", key, values)

    def set(self, key: str, value: str) -> None:
        self._op("SET", key, [value])

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self._op("HSET", key, [x for pair in mapping.items() for x in pair])

    def hdel(self, key: str, fields: Sequence[str]) -> None:
        self._op("HDEL", key, fields)

    def sadd(self, key: str, members: Sequence[str]) -> None:
        self._op("SADD", key, members)

    def xadd(self, key: str, entry_id: str, fields: dict[str, str]) -> None:
        self._op("XADD", key, [entry_id, *(x for pair in fields.items() for x in pair)])

    def xack(self, key: str, group: str, ids: Sequence[str]) -> None:
        """Acknowledge `ids`, then trim the stream of what every group has acknowledged
        (the nudge stream stays as long as its unread and pending entries)."""
        for start in range(0, len(ids), MAX_OP_ARGS):
            self._op("XACK", key, [group, *ids[start : start + MAX_OP_ARGS]])
        if ids:
            self.ops += ["TRIMACKED", str(self._index(key)), "0"]

    def args(self, token: str) -> list[str]:
        expected = "" if self.after_seq is None else str(self.after_seq)
        channel, message = self.announce or ("", "")
        checks = str(len(self.checks) // 2)
        return [token, expected, channel, message, checks, *self.checks, *self.ops]

    async def run(self, redis: Any, token: str) -> None:
        await WRITE(redis, self.keys, self.args(token))

    def _op(self, name: str, key: str, args: Sequence[str]) -> None:
        if not args:
            return
        step = MAX_OP_ARGS - MAX_OP_ARGS % 2  # keep field/value pairs together
        for start in range(0, len(args), step):
            chunk = args[start : start + step]
            self.ops += [name, str(self._index(key)), str(len(chunk)), *chunk]

    def _index(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1
