"""The websocket at `/v1/ws`: what the daemon sends, and the handshake's constants.

Client to daemon: one `Command` per text frame (protocol/commands.py). Daemon to
client: one `ServerMessage` per text frame, a discriminated union on `type`:

- `hello`: first, once: the protocol version and the daemon;
- `ack`: the answer to one command;
- `event`: one stored event of a subscribed session (`Frame`, numbered by `seq`);
- `delta`: streamed model text as it arrives; live only, never stored or replayed
  (the complete text follows in the `model.reply` event);
- `resync`: the client fell behind and its subscription to `session` was dropped;
  subscribe again with `since` = `seq` to continue with nothing lost.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from protocol.commands import Ack
from protocol.envelope import PROTOCOL_VERSION, Frame

PATH = "/v1/ws"
#: The subprotocol the daemon speaks; a client offers it in `Sec-WebSocket-Protocol`.
SUBPROTOCOL = "steer.v1"
#: Clients that cannot set an `Authorization` header offer the token as a second
#: subprotocol, `steer.token.<token>`; the daemon never echoes it back.
TOKEN_SUBPROTOCOL_PREFIX = "steer.token."
#: Largest frame a client may send; the daemon closes the connection (1009) beyond it.
MAX_CLIENT_FRAME_BYTES = 64 * 1024


class _ServerMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Hello(_ServerMessage):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    daemon_pid: int
    #: Commands allowed per second on this connection, and the burst above that.
    rate_per_s: float
    burst: int


class EventMessage(_ServerMessage):
    type: Literal["event"] = "event"
    frame: Frame


class TextDelta(_ServerMessage):
    type: Literal["delta"] = "delta"
    session: str
    agent: str
    request_no: int
    text: str
    #: When the daemon published it (Unix seconds), as a frame's `ts`: for latency figures.
    ts: float


class Resync(_ServerMessage):
    type: Literal["resync"] = "resync"
    session: str
    #: The last seq delivered on this connection for `session`.
    seq: int
    reason: str


ServerMessage = Annotated[
    Hello | Ack | EventMessage | TextDelta | Resync, Field(discriminator="type")
]

SERVER_MESSAGE_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
