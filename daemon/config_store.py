"""How an agent's config is kept in Redis: its own fields as JSON in the session's
agents hash, its tools and system prompt as blobs every agent with them shares.

A blob (`Keys.blob`) is a value's compact JSON under its SHA-256 (`daemon.interned`).
It is written with SET NX before the config that names it (on Redis Cluster it lives in
a slot of its own, so it cannot join the session's fenced write), and then never
changed or deleted: configs of any session, imported ones too, may name it, and there
are only a few (a tool set per kind of agent, a system prompt per workdir), each a few
KB. A config record names its blobs in `tools_blob` and `system_blob`.

A config written before blobs, with its tools and system prompt inline, loads as it
is (and stays so in Redis).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from daemon.agent_state import AgentConfig
from daemon.interned import digest, digest_of, encode, lookup
from daemon.keys import Keys

#: The record's fields naming the blobs, and the config fields they stand for.
REFS = {"tools_blob": "tools", "system_blob": "system"}


class MissingBlob(ValueError):
    """A config names a blob that is not in Redis, or one whose content is not its digest."""


def config_record(config: AgentConfig) -> str:
    """The config as stored: its own fields, and the digests of its shared values."""
    record: dict[str, Any] = config.model_dump(mode="json", exclude=set(REFS.values()))
    for ref, name in REFS.items():
        record[ref] = digest_of(getattr(config, name))
    return encode(record)


class ConfigStore:
    """Writes and reads config records with their blobs; knows which blobs this Redis has."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        #: Digests of blobs known to be in this Redis (written or read by this process).
        self._stored: set[str] = set()

    async def save_blobs(self, configs: Iterable[AgentConfig]) -> None:
        """Write the blobs `configs` name that this Redis may lack (SET NX: idempotent)."""
        missing: dict[str, str] = {}
        for config in configs:
            for name in REFS.values():
                value = getattr(config, name)
                key = digest_of(value)
                if key not in self._stored:
                    missing[key] = encode(value)
        if not missing:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, text in missing.items():
                pipe.set(self._keys.blob(key), text, nx=True)
            await pipe.execute()
        self._stored.update(missing)

    async def load(self, raw: Mapping[str, str]) -> dict[str, AgentConfig]:
        """Config records (by agent id) read back, their blobs fetched where this process
        holds no interned copy. Raises ValueError (or ValidationError) if one cannot."""
        records: dict[str, dict[str, Any]] = {}
        for aid, text in raw.items():
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError("a config that is not a JSON object")
            records[aid] = record
        values = await self._values(
            {str(r[ref]) for r in records.values() for ref in REFS if ref in r}
        )
        configs = {}
        for aid, record in records.items():
            for ref, name in REFS.items():
                if ref in record:
                    record[name] = values[record.pop(ref)]
            configs[aid] = AgentConfig.model_validate(record)
        return configs

    async def _values(self, digests: set[str]) -> dict[str, Any]:
        values = {key: lookup(key) for key in digests}
        wanted = [key for key, value in values.items() if value is None]
        if wanted:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in wanted:
                    pipe.get(self._keys.blob(key))
                texts = await pipe.execute()
            for key, text in zip(wanted, texts, strict=True):
                if text is None:
                    raise MissingBlob(f"the blob {self._keys.blob(key)} is not in Redis")
                if digest(text) != key:
                    raise MissingBlob(f"the blob {self._keys.blob(key)} holds other content")
                values[key] = json.loads(text)
            self._stored.update(wanted)
        return values
