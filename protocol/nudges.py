"""Nudges: durable human corrections addressed to a session or one of its agents.

A nudge travels as a flat Redis stream entry (all fields strings) so that the `nudge`
command can write it without importing pydantic; `Nudge.to_fields`/`from_fields`
are the two ends of that encoding.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: steer: next boundary; redirect: interrupt now, then deliver; queue: when the turn ends.
NudgeMode = Literal["steer", "redirect", "queue"]
#: How a nudge reached the model: a mid-conversation system message, or (for models
#: without them) an operator note appended to the next user turn.
DeliveryPath = Literal["system_message", "user_note"]

MAX_NUDGE_BYTES = 16 * 1024
MAX_AUTHOR_CHARS = 64
NUDGE_MODES: tuple[NudgeMode, ...] = ("steer", "redirect", "queue")


def _check_text(text: str) -> str:
    if not text.strip():
        raise ValueError("nudge text is empty")
    if len(text.encode()) > MAX_NUDGE_BYTES:
        raise ValueError(f"nudge text is over {MAX_NUDGE_BYTES} bytes")
    return text


#: Not blank, at most MAX_NUDGE_BYTES of UTF-8. The JSON Schema says so as closely as
#: it can (it counts characters, not bytes); validation is `_check_text`.
NudgeText = Annotated[
    str,
    AfterValidator(_check_text),
    Field(
        json_schema_extra={"minLength": 1, "maxLength": MAX_NUDGE_BYTES, "pattern": r"\S"},
        description=f"not blank; at most {MAX_NUDGE_BYTES} bytes of UTF-8",
    ),
]


class Nudge(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nudge_id: str = Field(min_length=1, max_length=64)
    session: str = Field(min_length=1, max_length=64)
    #: Agent id inside the session; None addresses the root agent.
    agent: str | None = Field(default=None, max_length=64)
    mode: NudgeMode = "steer"
    text: NudgeText
    author: str = Field(default="operator", min_length=1, max_length=MAX_AUTHOR_CHARS)
    #: Unix time (seconds) at which the sender wrote it.
    sent_at: float
    #: For every agent of the session, including subagents spawned later (`--all`).
    standing: bool = False

    @model_validator(mode="after")
    def _standing_has_no_agent(self) -> Nudge:
        if self.standing and self.agent is not None:
            raise ValueError("a standing nudge addresses a whole session, not one agent")
        return self

    @property
    def target(self) -> str:
        if self.standing:
            return f"{self.session}/*"
        return f"{self.session}/{self.agent}" if self.agent else self.session

    def to_fields(self) -> dict[str, str]:
        fields = {
            "nudge_id": self.nudge_id,
            "session": self.session,
            "agent": self.agent or "",
            "mode": self.mode,
            "text": self.text,
            "author": self.author,
            "sent_at": repr(self.sent_at),
        }
        if self.standing:
            fields["standing"] = "1"
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Nudge:
        return cls(
            nudge_id=fields.get("nudge_id", ""),
            session=fields.get("session", ""),
            agent=fields.get("agent") or None,
            mode=fields.get("mode", "steer"),
            text=fields.get("text", ""),
            author=fields.get("author") or "operator",
            sent_at=float(fields.get("sent_at") or 0.0),
            standing=fields.get("standing") == "1",
        )


class SendNudge(BaseModel):
    """The body of `POST /v1/sessions/{session}/nudges`."""

    model_config = ConfigDict(extra="forbid")

    text: NudgeText
    mode: NudgeMode = "steer"
    agent: str | None = Field(default=None, min_length=1, max_length=64)
    author: str = Field(default="operator", min_length=1, max_length=MAX_AUTHOR_CHARS)
    #: Optional client-chosen id, so a retried request cannot apply twice.
    nudge_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: Every agent of the session, including subagents spawned later.
    standing: bool = False

    @model_validator(mode="after")
    def _standing_has_no_agent(self) -> SendNudge:
        if self.standing and self.agent is not None:
            raise ValueError("a standing nudge addresses a whole session, not one agent")
        return self
