"""Nudges: durable human corrections addressed to a session or one of its agents.

A nudge travels as a flat Redis stream entry whose format, limits and checks are
`protocol.wire`'s (the `nudge` command writes it without pydantic); `Nudge.to_fields`
and `Nudge.from_fields` are the two ends of that encoding here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from protocol import wire
from protocol.wire import MAX_AUTHOR_CHARS, MAX_ID_CHARS, MAX_NUDGE_BYTES, InvalidEntry

if TYPE_CHECKING:
    from protocol.wire import RawFields

#: steer: next boundary; redirect: interrupt now, then deliver; queue: when the turn ends.
#: `wire.NUDGE_MODES` as a type (a test holds them equal).
NudgeMode = Literal["steer", "redirect", "queue"]
#: How a nudge reached the model: a mid-conversation system message, or (for models
#: without them) an operator note appended to the next user turn.
DeliveryPath = Literal["system_message", "user_note"]


def _rule(problem: Callable[[str], str | None]) -> AfterValidator:
    """A `protocol.wire` rule as a validator whose message is the rule's own sentence."""

    def check(value: str) -> str:
        reason = problem(value)
        if reason:
            raise PydanticCustomError("wire_rule", reason)
        return value

    return AfterValidator(check)


#: Not blank, at most MAX_NUDGE_BYTES of UTF-8. The JSON Schema says so as closely as
#: it can (it counts characters, not bytes).
NudgeText = Annotated[
    str,
    _rule(wire.text_problem),
    Field(
        json_schema_extra={"minLength": 1, "maxLength": MAX_NUDGE_BYTES, "pattern": r"\S"},
        description=f"not blank; at most {MAX_NUDGE_BYTES} bytes of UTF-8",
    ),
]
#: Not blank, at most MAX_AUTHOR_CHARS.
Author = Annotated[
    str,
    _rule(wire.author_problem),
    Field(json_schema_extra={"minLength": 1, "maxLength": MAX_AUTHOR_CHARS, "pattern": r"\S"}),
]
NudgeId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
#: A rule's RE2 pattern or shell command (`wire.rule_problem` checks the rest).
RuleText = Annotated[
    str, Field(min_length=1, max_length=wire.MAX_RULE_CHARS, pattern=r"^[^\x00]*\S[^\x00]*$")
]


class Nudge(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    nudge_id: NudgeId
    session: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    #: Agent id inside the session; None addresses the root agent.
    agent: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    mode: NudgeMode = "steer"
    text: NudgeText
    author: Author = wire.DEFAULT_AUTHOR
    #: Unix time (seconds) at which the sender wrote it.
    sent_at: float = Field(ge=0)
    #: For every agent of the session, including subagents spawned later (`--all`).
    standing: bool = False
    #: A rule: every file an agent writes is checked against this RE2 pattern (a line
    #: that matches violates it)...
    rule_regex: RuleText | None = None
    #: ...or by this shell command, given the file's path (a non-zero exit violates it).
    rule_cmd: RuleText | None = None
    #: A write_file/edit_file that would violate the rule is refused, not re-delivered.
    rule_veto: bool = False

    @model_validator(mode="after")
    def _standing_has_no_agent(self) -> Nudge:
        if self.standing and self.agent is not None:
            raise ValueError(wire.STANDING_HAS_NO_AGENT)
        problem = wire.rule_problem(self.rule_regex, self.rule_cmd, self.rule_veto, self.standing)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def is_rule(self) -> bool:
        return self.rule_regex is not None or self.rule_cmd is not None

    @property
    def target(self) -> str:
        if self.standing:
            return f"{self.session}/*"
        return f"{self.session}/{self.agent}" if self.agent else self.session

    def to_fields(self) -> dict[str, str]:
        return wire.nudge_fields(
            nudge_id=self.nudge_id,
            session=self.session,
            agent=self.agent,
            mode=self.mode,
            text=self.text,
            author=self.author,
            sent_at=self.sent_at,
            standing=self.standing,
            rule_regex=self.rule_regex,
            rule_cmd=self.rule_cmd,
            rule_veto=self.rule_veto,
        )

    @classmethod
    def from_fields(cls, fields: RawFields) -> Nudge:
        """The nudge of a stream entry, bytes or text; raises InvalidEntry and nothing else."""
        decoded = wire.decode_nudge_fields(fields)
        try:
            return cls.model_validate(decoded)
        except ValidationError as exc:  # wire's checks and the model's have drifted apart
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidEntry(reason or "invalid nudge") from None


#: JSON Schema for "a standing nudge names no agent", "a rule names no agent" and "a
#: rule is a regex or a command, not both" (the validator below says them too).
_STANDING_HAS_NO_AGENT: JsonDict = {
    "allOf": [
        {
            "if": {"properties": {"standing": {"const": True}}, "required": ["standing"]},
            "then": {"properties": {"agent": {"type": "null"}}},
        },
        {
            "if": {
                "anyOf": [
                    {"properties": {"rule_regex": {"type": "string"}}, "required": ["rule_regex"]},
                    {"properties": {"rule_cmd": {"type": "string"}}, "required": ["rule_cmd"]},
                ]
            },
            "then": {"properties": {"agent": {"type": "null"}}},
        },
        {
            "not": {
                "properties": {
                    "rule_regex": {"type": "string"},
                    "rule_cmd": {"type": "string"},
                },
                "required": ["rule_regex", "rule_cmd"],
            }
        },
        {
            "if": {"properties": {"rule_veto": {"const": True}}, "required": ["rule_veto"]},
            "then": {
                "anyOf": [
                    {"properties": {"rule_regex": {"type": "string"}}, "required": ["rule_regex"]},
                    {"properties": {"rule_cmd": {"type": "string"}}, "required": ["rule_cmd"]},
                ]
            },
        },
    ]
}


class SendNudge(BaseModel):
    """The body of `POST /v1/sessions/{session}/nudges`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_STANDING_HAS_NO_AGENT)

    text: NudgeText
    mode: NudgeMode = "steer"
    agent: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    author: Author = wire.DEFAULT_AUTHOR
    #: Optional client-chosen id, so a retried request cannot apply twice.
    nudge_id: NudgeId | None = None
    #: Every agent of the session, including subagents spawned later.
    standing: bool = False
    #: A rule (implies `standing`): see `Nudge.rule_regex`, `rule_cmd` and `rule_veto`.
    rule_regex: RuleText | None = None
    rule_cmd: RuleText | None = None
    rule_veto: bool = False

    @model_validator(mode="after")
    def _standing_has_no_agent(self) -> SendNudge:
        rule = self.rule_regex is not None or self.rule_cmd is not None
        if (self.standing or rule) and self.agent is not None:
            raise ValueError(wire.STANDING_HAS_NO_AGENT)
        problem = wire.rule_problem(self.rule_regex, self.rule_cmd, self.rule_veto, True)
        if problem:
            raise ValueError(problem)
        return self
