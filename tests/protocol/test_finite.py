"""No protocol model takes an infinity or a NaN in a float field: JSON would store it as
null (or `Infinity`), which no float field reads back, so one bad number would make a
session's event stream unreadable."""

from __future__ import annotations

import inspect
import math
import types
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from protocol import commands, envelope, events, nudges, sessions, websocket
from protocol.envelope import Frame
from protocol.events import AgentFailed, CacheReport, ModelReplied, ToolCalled
from protocol.nudges import Nudge
from protocol.sessions import AgentSummary, SessionSpec, Usage
from protocol.websocket import Hello

NON_FINITE = [math.inf, -math.inf, math.nan]
MODULES = [commands, envelope, events, nudges, sessions, websocket]


def has_float(annotation: Any) -> bool:
    if annotation is float:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(has_float(arg) for arg in get_args(annotation))
    return False


def models_with_floats() -> list[type[BaseModel]]:
    found = {
        model
        for module in MODULES
        for _, model in inspect.getmembers(module, inspect.isclass)
        if issubclass(model, BaseModel) and model.__module__ == module.__name__
        if any(has_float(field.annotation) for field in model.model_fields.values())
    }
    return sorted(found, key=lambda model: model.__name__)


def test_every_model_with_a_float_field_refuses_non_finite_numbers() -> None:
    models = models_with_floats()
    assert {m.__name__ for m in models} >= {
        "Nudge",
        "Frame",
        "SessionSpec",
        "AgentSummary",
        "CacheReport",
        "ModelReplied",
        "Hello",
    }
    for model in models:
        assert model.model_config.get("allow_inf_nan") is False, model.__name__


def frame(**overrides: Any) -> dict[str, Any]:
    event = AgentFailed(agent="root", message="m").model_dump()
    return {"session": "s-1", "seq": 1, "ts": 1.0, "event": event} | overrides


def reply(**overrides: Any) -> dict[str, Any]:
    cache = CacheReport(prompt_tokens=10, cache_read_input_tokens=5).model_dump()
    return {
        "agent": "root",
        "request_no": 1,
        "message_id": "m",
        "stop_reason": None,
        "text": "",
        "usage": Usage().model_dump(),
        "cost_usd": 0.0,
        "cache": cache,
    } | overrides


CASES: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (
        Nudge,
        {"nudge_id": "n", "session": "s", "text": "t", "sent_at": 1.0},
        "sent_at",
    ),
    (Frame, frame(), "ts"),
    (
        SessionSpec,
        {"id": "s", "name": "n", "task": "t", "workdir": "/", "model": "m", "created_at": 1.0},
        "created_at",
    ),
    (AgentSummary, {"session": "s", "agent": "a", "status": "idle", "model": "m"}, "cost_usd"),
    (
        AgentSummary,
        {"session": "s", "agent": "a", "status": "idle", "model": "m"},
        "last_cached_share",
    ),
    (CacheReport, {"prompt_tokens": 1, "cache_read_input_tokens": 1}, "prior_cached_share"),
    (ModelReplied, reply(), "cost_usd"),
    (Hello, {"daemon_pid": 1, "rate_per_s": 1.0, "burst": 1}, "rate_per_s"),
]


@pytest.mark.parametrize(
    ("model", "good", "field"), CASES, ids=[f"{m.__name__}.{f}" for m, _, f in CASES]
)
@pytest.mark.parametrize("number", NON_FINITE, ids=["inf", "-inf", "nan"])
def test_a_non_finite_float_is_refused(
    model: type[BaseModel], good: dict[str, Any], field: str, number: float
) -> None:
    model.model_validate(good)
    with pytest.raises(ValidationError, match="finite number"):
        model.model_validate(good | {field: number})


@pytest.mark.parametrize("number", ["1e999", "-1e999", "Infinity", "NaN"])
def test_stored_json_with_a_non_finite_number_is_refused(number: str) -> None:
    text = Frame.model_validate(frame()).model_dump_json().replace('"ts":1.0', f'"ts":{number}')
    assert number in text
    with pytest.raises(ValidationError):
        Frame.model_validate_json(text)


def test_a_nudge_sent_in_the_past_or_the_future_is_kept_but_not_before_1970() -> None:
    good = {"nudge_id": "n", "session": "s", "text": "t"}
    assert Nudge.model_validate(good | {"sent_at": 0.0}).sent_at == 0.0
    assert Nudge.model_validate(good | {"sent_at": 1e300}).sent_at == 1e300
    with pytest.raises(ValidationError):
        Nudge.model_validate(good | {"sent_at": -1.0})


def test_a_non_finite_number_in_a_tool_input_reads_back_as_null() -> None:
    """Tool inputs are the model's JSON (1e999 parses as infinity there); refusing it
    would stop the agent, and as a JSON value null is readable."""
    event = ToolCalled(agent="root", call_id="c", name="n", input={"x": math.inf})
    assert ToolCalled.model_validate_json(event.model_dump_json()).input == {"x": None}
