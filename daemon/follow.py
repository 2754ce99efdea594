"""`GET /v1/sessions/{s}/events?follow=true`: an HTTP follower, as a hub subscriber.

A follower gets what a websocket subscription gets, as NDJSON: the stored frames after
`since`, replayed from Redis page by page, then the frames the hub publishes live, with
no gap and no repeat (see daemon/hub.py). It holds no Redis connection once live, so
any number of followers share the reader pool with the websocket's subscriptions.

The hub resyncs a follower that falls behind like any subscriber; here the follower
subscribes again from the last frame it sent, so its client sees one unbroken stream.
A blank line goes out after `KEEPALIVE_S` of silence, so that a client that went away
is noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from daemon.hub import Hub
from protocol.websocket import Resync

KEEPALIVE_S = 2.0
#: The pause before subscribing again after a resync: none after the first, then
#: doubling while resyncs come one after another with no frame between them (the
#: store is unavailable, so every replay fails), up to the keep-alive interval.
RESUBSCRIBE_MIN_S = 0.1
RESUBSCRIBE_MAX_S = KEEPALIVE_S


async def follow(hub: Hub, sid: str, since: int) -> AsyncIterator[bytes]:
    """The session's frames after `since`, one JSON line each, until the client leaves."""
    sub = hub.connect(bare=True)
    catching_up: asyncio.Task[None] | None = None
    pause = 0.0
    try:
        while True:
            # Subscribed after the resync only: the frames queued before it come first.
            if catching_up is None:
                await hub.subscribe(sub, lambda: [sid], since={sid: since}, replay=True)
                catching_up = asyncio.create_task(hub.catch_up(sub), name=f"follow {sid}")
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    text, resync = await sub.get_item()
            except TimeoutError:
                yield b"\n"
                continue
            if not resync:
                pause = 0.0
                yield text.encode() + b"\n"
                continue
            # Every frame queued before the resync has been sent: go on after the last.
            since = Resync.model_validate_json(text).seq
            catching_up.cancel()
            catching_up = None
            await asyncio.sleep(pause)
            pause = min(max(pause * 2, RESUBSCRIBE_MIN_S), RESUBSCRIBE_MAX_S)
    finally:
        hub.disconnect(sub)
        if catching_up is not None:
            catching_up.cancel()
