"""The end of a session's life, from any daemon: `done`, `archive` and `rm`.

A session a daemon drives is ended, archived or removed by that daemon (its supervisor
stops driving it first); one driven elsewhere has the verb relayed to its owner. One
nobody drives (archived, imported, or an orphan about to be taken over) is handled here,
straight in Redis (`daemon.life_store`), where the scripts make sure no daemon claims
it meanwhile.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, JsonValue

from daemon import life_store
from daemon.compaction import compact_events
from daemon.errors import CommandError
from protocol.commands import Archive, EndSession, Remove

if TYPE_CHECKING:
    from daemon.supervisor import Supervisor

log = logging.getLogger("steer.life")

LifeVerb = EndSession | Archive | Remove


class Removed(BaseModel):
    """What `rm` answers: the session that is gone, and how many keys it had."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    keys: int


async def execute(supervisor: Supervisor, sid: str, command: LifeVerb) -> JsonValue:
    """Run a life verb on session `sid`; for `rm`, a `Removed` as JSON, else None."""
    store = supervisor.store
    if isinstance(command, Archive) and command.compact and not command.undo:
        marks = (await life_store.flags(store, [sid]))[sid]
        if marks.imported:
            raise CommandError("conflict", f"{sid}: {life_store.READ_ONLY}")
        if not marks.archived:
            await execute(supervisor, sid, command.model_copy(update={"compact": False}))
        # Archived: no daemon holds its lease, so the compaction is fenced on that.
        done = await compact_events(store.redis, store.keys, sid, token=None)
        log.info(
            "session.compacted sid=%s kept=%d dropped=%d bytes_before=%d bytes_after=%d",
            sid,
            done.kept,
            done.dropped,
            done.bytes_before,
            done.bytes_after,
        )
        return None
    if supervisor.owns(sid):
        return await _here(supervisor, sid, command)
    if (await store.lease_holders([sid]))[sid] is not None:
        return await supervisor.relay.forward(sid, command.model_copy(update={"session": sid}))
    return await _unowned(supervisor, sid, command)


async def _here(supervisor: Supervisor, sid: str, command: LifeVerb) -> JsonValue:
    match command:
        case EndSession(author=author):
            await supervisor.end_session(sid, author=author)
        case Archive(undo=True):
            raise CommandError("conflict", f"session {sid} is not archived")
        case Archive(author=author, force=force):
            await supervisor.archive_session(sid, author=author, force=force)
        case Remove(author=author, force=force):
            name = supervisor.summary(sid).spec.name
            keys = await supervisor.remove_session(sid, author=author, force=force)
            return Removed(id=sid, name=name, keys=keys).model_dump(mode="json")
    return None


async def _unowned(supervisor: Supervisor, sid: str, command: LifeVerb) -> JsonValue:
    """A session no daemon drives: archived, imported, or an orphan being taken over."""
    store = supervisor.store
    marks = (await life_store.flags(store, [sid]))[sid]
    summary = await supervisor.directory.summary(sid)
    busy = life_store.at_work(summary.agents)
    nobody = f"no daemon drives session {sid} right now (it is being taken over); retry in a moment"
    match command:
        case EndSession():
            await life_store.writable(store, sid)
            raise CommandError("unavailable", nobody)
        case Archive(undo=True):
            if marks.imported:
                raise CommandError("conflict", f"{sid}: {life_store.READ_ONLY}; they stay archived")
            if not marks.archived:
                raise CommandError("conflict", f"session {sid} is not archived")
            await life_store.unarchive(store, sid)
        case Archive(author=author, force=force):
            if marks.archived:
                raise CommandError("conflict", f"session {sid} is archived already")
            if busy:
                if not force:
                    raise life_store.busy_refusal("archive", sid, busy)
                raise CommandError("unavailable", nobody)  # only its owner can end it
            if not await life_store.archive(store, sid, None, author):
                raise CommandError("unavailable", f"session {sid} was just claimed; retry")
        case Remove(author=author, force=force):
            if busy and not force and not marks.archived:
                raise life_store.busy_refusal("rm", sid, busy)
            if not marks.archived and not await life_store.archive(store, sid, None, author):
                raise CommandError("unavailable", f"session {sid} was just claimed; retry")
            keys = await life_store.remove(store, sid, summary.spec.name)
            return Removed(id=sid, name=summary.spec.name, keys=keys).model_dump(mode="json")
    return None
