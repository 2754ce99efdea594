"""Export and import: a session's whole history as JSON Lines, and back.

An export is one JSON object per line, each with a `kind`:

- `header` first: `format` (EXPORT_FORMAT), `session` (its id) and `exported_at`;
- `spec`: the SessionSpec;
- `budget`: its budget, if it has one (`steer budget`);
- `agent`, one per agent (by id): its config (whole: the tools and system prompt it
  shares with other agents as blobs in Redis are written out in it), its small state
  (status, usage, costs, the last checks' evidence), the nudges recorded for it and
  not yet delivered (`pending`) and the ids of every nudge it recorded (`seen`);
- `message`, one per message of each agent's conversation, in order, as sent to the model;
- `standing`: the session's standing nudges (rules included);
- `protected`: its protected files as created (path, fingerprint, bytes);
- `frame`, one per event, in seq order: every nudge with its author and where it landed
  (nudge.received, nudge.applied, nudge.delivered), every check and its evidence, every
  request and its cost.

Not exported: what only the live daemon needs (the lease, the epoch, the nudge and
control streams, the archive marks). Every value is read into its model and written out
again, so exporting an imported session gives the very same lines but for the
header's `exported_at`.

An import writes the session into another Redis as archived and imported: no daemon
drives it, and verbs and nudges on it are refused (`life_store.READ_ONLY`); show, logs
and the dashboard read it like any other. Its id and its name must be free there.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon.agent_state import AgentConfig, AgentState, Message
from daemon.config_store import config_record
from daemon.errors import CommandError
from daemon.guard import MAX_IMPORT_BYTES
from daemon.guards import ProtectedFile
from daemon.life_store import record
from daemon.store import Store
from protocol.envelope import Frame
from protocol.nudges import Nudge
from protocol.sessions import Budget, SessionSpec

EXPORT_FORMAT = 1
#: The largest import the daemon reads (the API's body limit for the import route).
MAX_IMPORT = MAX_IMPORT_BYTES
#: Frames read per round trip while exporting, and values written per command importing.
PAGE = 1_000
#: What the imported frames' stream entries name as their writer.
IMPORT_OWNER = "import"


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _plain(model: BaseModel) -> Any:
    """A model as plain JSON values, in its fields' order."""
    return json.loads(model.model_dump_json())


async def export_lines(store: Store, sid: str) -> AsyncIterator[bytes]:
    """The session's export, line by line (see the module docstring)."""
    spec = await store.load_spec(sid)
    if spec is None:
        raise CommandError("unknown_session", f"unknown session {sid!r}")
    yield _line(
        {"kind": "header", "format": EXPORT_FORMAT, "session": sid, "exported_at": time.time()}
    )
    yield _line({"kind": "spec", "spec": _plain(spec)})
    if (budget := await store.load_budget(sid)) is not None:
        yield _line({"kind": "budget", "budget": _plain(budget)})
    agents = sorted(await store.load_agents(sid), key=lambda a: a.config.agent)
    for agent in agents:
        pending = sorted(agent.pending, key=lambda n: (n.sent_at, n.nudge_id))
        yield _line(
            {
                "kind": "agent",
                "config": _plain(agent.config),
                "state": _plain(agent.state),
                "pending": [_plain(n) for n in pending],
                "seen": sorted(agent.seen),
            }
        )
    for agent in agents:
        for message in agent.messages:
            yield _line({"kind": "message", "agent": agent.config.agent, "message": message})
    for nudge in await store.load_standing(sid):
        yield _line({"kind": "standing", "nudge": _plain(nudge)})
    for path, kept in sorted((await store.load_protected(sid)).items()):
        yield _line({"kind": "protected", "path": path, "file": _plain(kept)})
    since = 0
    while frames := await store.read_events(sid, since=since, count=PAGE):
        for frame in frames:
            since = frame.seq
            yield _line({"kind": "frame", "frame": _plain(frame)})


@dataclass
class ImportedAgent:
    config: AgentConfig
    state: AgentState
    pending: list[Nudge]
    seen: list[str]
    messages: list[Message] = field(default_factory=list)


@dataclass
class Export:
    """An export read back and checked, ready to be written."""

    session: str
    exported_at: float
    spec: SessionSpec
    budget: Budget | None = None
    agents: dict[str, ImportedAgent] = field(default_factory=dict)
    standing: list[Nudge] = field(default_factory=list)
    protected: dict[str, ProtectedFile] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)


def parse_export(lines: Iterable[bytes | str]) -> Export:
    """Read and check an export; `CommandError("invalid")` naming the first bad line."""
    header: dict[str, Any] | None = None
    spec: SessionSpec | None = None
    found: Export | None = None
    number = 0
    for number, raw in enumerate(lines, start=1):
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            if header is None:
                header = _header(value)
                continue
            kind = value.get("kind")
            if kind == "spec":
                if spec is not None:
                    raise ValueError("a second spec")
                spec = SessionSpec.model_validate(value["spec"])
                _same(spec.id, header["session"])
                found = Export(header["session"], header["exported_at"], spec)
                continue
            if found is None:
                raise ValueError("the spec must come right after the header")
            _take(found, kind, value)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise CommandError("invalid", f"line {number}: {_first_line(exc)}") from None
    if found is None:
        raise CommandError("invalid", "not a steer export: no header and spec")
    if "root" not in found.agents:
        raise CommandError("invalid", "the export has no root agent")
    return found


def _header(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("kind") != "header":
        raise ValueError("not a steer export: the first line is not its header")
    if value.get("format") != EXPORT_FORMAT:
        found = value.get("format")
        raise ValueError(f"export format {found!r}; this daemon reads {EXPORT_FORMAT}")
    session, exported_at = value.get("session"), value.get("exported_at")
    if not isinstance(session, str) or not session or len(session) > 64:
        raise ValueError("the header names no session")
    if not isinstance(exported_at, int | float):
        raise ValueError("the header has no exported_at")
    return value


def _same(found: str, expected: str) -> None:
    if found != expected:
        raise ValueError(f"session {found!r} in an export of {expected!r}")


def _take(export: Export, kind: object, value: dict[str, Any]) -> None:
    sid = export.session
    match kind:
        case "agent":
            config = AgentConfig.model_validate(value["config"])
            _same(config.session, sid)
            if config.agent in export.agents:
                raise ValueError(f"agent {config.agent!r} twice")
            export.agents[config.agent] = ImportedAgent(
                config=config,
                state=AgentState.model_validate(value["state"]),
                pending=[Nudge.model_validate(n) for n in value["pending"]],
                seen=[str(s) for s in value["seen"]],
            )
        case "message":
            agent = export.agents.get(value["agent"])
            if agent is None:
                raise ValueError(f"a message of agent {value['agent']!r}, not exported")
            message = value["message"]
            if not isinstance(message, dict):
                raise ValueError("a message is not a JSON object")
            agent.messages.append(message)
        case "budget":
            export.budget = Budget.model_validate(value["budget"])
        case "standing":
            export.standing.append(Nudge.model_validate(value["nudge"]))
        case "protected":
            export.protected[str(value["path"])] = ProtectedFile.model_validate(value["file"])
        case "frame":
            frame = Frame.model_validate(value["frame"])
            _same(frame.session, sid)
            last = export.frames[-1].seq if export.frames else 0
            if frame.seq <= last:
                raise ValueError(f"frame seq {frame.seq} after {last}")
            export.frames.append(frame)
        case _:
            raise ValueError(f"unknown kind {kind!r}")


async def import_session(store: Store, export: Export) -> SessionSpec:
    """Write an export into this Redis as an archived, read-only session."""
    sid, spec, keys, redis = export.session, export.spec, store.keys, store.redis
    if await redis.hexists(keys.sessions, sid) or await redis.exists(
        keys.spec(sid), keys.epoch(sid)
    ):
        raise CommandError("conflict", f"session {sid} exists here; remove it first (steer rm)")
    if not await redis.hsetnx(keys.names, spec.name, sid):
        holder = await redis.hget(keys.names, spec.name)
        raise CommandError("conflict", f"the name {spec.name!r} is taken by session {holder}")
    try:
        # The blobs the configs name (tools, system prompts) before the configs: they are
        # global keys, outside the session's slot, and other sessions may share them.
        await store.configs.save_blobs(agent.config for agent in export.agents.values())
        async with redis.pipeline(transaction=True) as pipe:
            # The marks first: no daemon may claim the session while it is being written.
            pipe.set(keys.archived(sid), record("import"))
            origin = {"imported_at": time.time(), "exported_at": export.exported_at}
            pipe.set(keys.imported(sid), json.dumps(origin))
            pipe.set(keys.spec(sid), spec.model_dump_json())
            if export.budget is not None:
                pipe.set(keys.budget(sid), export.budget.model_dump_json())
            for aid, agent in export.agents.items():
                pipe.hset(keys.agents(sid), aid, config_record(agent.config))
                pipe.set(keys.state(sid, aid), agent.state.model_dump_json())
                for chunk in _chunks([_compact(m) for m in agent.messages]):
                    pipe.rpush(keys.messages(sid, aid), *chunk)
                if agent.pending:
                    pending = {n.nudge_id: n.model_dump_json() for n in agent.pending}
                    pipe.hset(keys.pending(sid, aid), mapping=pending)
                for chunk in _chunks(agent.seen):
                    pipe.sadd(keys.seen(sid, aid), *chunk)
            for chunk in _chunks([n.model_dump_json() for n in export.standing]):
                pipe.rpush(keys.standing(sid), *chunk)
            if export.protected:
                kept = {p: f.model_dump_json() for p, f in export.protected.items()}
                pipe.hset(keys.protected(sid), mapping=kept)
            for frame in export.frames:
                fields = {"frame": frame.model_dump_json(), "owner": IMPORT_OWNER}
                pipe.xadd(keys.events(sid), fields, id=f"{frame.seq}-0")
            await pipe.execute()
        await redis.hset(keys.sessions, sid, spec.name)
    except BaseException:
        await redis.hdel(keys.names, spec.name)
        await redis.delete(*keys.session_keys(sid, export.agents))
        raise
    return spec


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), PAGE):
        yield values[start : start + PAGE]


def _compact(message: Message) -> str:
    # As the store writes a conversation (`store._dumps`): what is stored is what is re-sent.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _first_line(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{exc.title}: {where or 'value'}: {first.get('msg')}"
    text = str(exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
