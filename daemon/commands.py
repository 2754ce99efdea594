"""Carry out one client command against the supervisor: the one place where the
websocket and the HTTP routes turn a `protocol.commands` model into an action.

Returns the ack's result (JSON) or raises `CommandError`. Subscriptions are the
websocket's own business (daemon/ws.py handles them before they get here).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import JsonValue

from daemon import life, life_store
from daemon.agent_state import ROOT
from daemon.errors import CommandError
from daemon.redis_health import stale
from daemon.supervisor import Supervisor
from protocol.commands import (
    Approve,
    ApproveSession,
    Archive,
    Check,
    Command,
    Deny,
    EndSession,
    GetMessages,
    ListSessions,
    Pause,
    Ping,
    Redirect,
    Remove,
    Resume,
    SendNudgeCommand,
    SetBudget,
    Start,
    Subscribe,
    Unsubscribe,
    Veto,
)
from protocol.nudges import SendNudge
from protocol.sessions import StartSession


async def execute(
    supervisor: Supervisor, command: Command, *, stale_since: float | None = None
) -> JsonValue:
    """`stale_since`: when the daemon lost Redis, while it has (listed summaries say so).

    A verb on a session another daemon owns is carried to it (`daemon.relay`) and
    answered with its result or refusal, as if it ran here."""
    directory = supervisor.directory
    match command:
        case Subscribe() | Unsubscribe():
            raise CommandError("invalid", f"{command.type} is for the websocket only")
        case Ping():
            return "pong"
        case ListSessions(archived=archived):
            summaries = await directory.summaries(archived=archived)
            return [s.model_dump(mode="json") for s in stale(summaries, stale_since)]
        case GetMessages(session=ref, agent=agent):
            return list(await directory.messages(await directory.resolve(ref), agent or ROOT))
        case Start():
            request = StartSession.model_validate(command.model_dump(exclude={"id", "type"}))
            workdir = await asyncio.to_thread(existing_dir, request.workdir)
            spec = await supervisor.create_session(request.model_copy(update={"workdir": workdir}))
            return spec.model_dump(mode="json")
        case SendNudgeCommand(session=ref):
            body = SendNudge.model_validate(command.model_dump(exclude={"id", "type", "session"}))
            nudge = await supervisor.send_nudge(await directory.resolve(ref), body)
            return nudge.model_dump(mode="json")
        case EndSession() | Archive() | Remove():
            return await life.execute(supervisor, await directory.resolve(command.session), command)
        case Redirect(session=ref, agent=agent, text=text, author=author):
            body = SendNudge(text=text, mode="redirect", agent=agent, author=author)
            nudge = await supervisor.send_nudge(await directory.resolve(ref), body)
            return nudge.model_dump(mode="json")
        case (
            Pause()
            | Resume()
            | Veto()
            | Approve()
            | Deny()
            | Check()
            | ApproveSession()
            | SetBudget()
        ):
            sid = await directory.resolve(command.session)
            if not directory.owns(sid):
                await life_store.writable(supervisor.store, sid)  # archived: nobody to run it
                return await supervisor.relay.forward(
                    sid, command.model_copy(update={"session": sid})
                )
            await _verb(supervisor, sid, command)
            return None


async def _verb(supervisor: Supervisor, sid: str, command: Command) -> None:
    """An operator's verb on a session this daemon owns."""
    match command:
        case Pause(agent=agent, now=now, author=author):
            await supervisor.pause_agents(sid, agent, now=now, author=author)
        case Resume(agent=agent, author=author):
            await supervisor.resume_agents(sid, agent, author=author)
        case Veto(agent=agent, reason=reason, author=author):
            await supervisor.veto(sid, agent, reason=reason, author=author)
        case Approve(agent=agent, call_id=call_id, author=author):
            await supervisor.decide(sid, agent, call_id, approve=True, reason=None, author=author)
        case Deny(agent=agent, call_id=call_id, reason=reason, author=author):
            await supervisor.decide(
                sid, agent, call_id, approve=False, reason=reason, author=author
            )
        case Check(author=author):
            await supervisor.check_now(sid, author=author)
        case ApproveSession(author=author):
            await supervisor.approve_session(sid, author=author)
        case SetBudget(usd=usd, tokens=tokens, author=author):
            await supervisor.set_budget(sid, usd=usd, tokens=tokens, author=author)


def serve_relayed(supervisor: Supervisor) -> None:
    """Let other daemons' callers run verbs on the sessions this one owns."""

    async def run(command: Command) -> JsonValue:
        return await execute(supervisor, command)

    supervisor.relay.execute = run


def existing_dir(path: str) -> str:
    """The absolute form of `path`, which must be an existing directory."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise CommandError("invalid", f"workdir is not a directory: {path}")
    return str(resolved)
