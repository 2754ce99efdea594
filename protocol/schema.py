"""JSON Schema export of every frame, for editor plugins: `python -m protocol.schema`."""

from __future__ import annotations

import json

from pydantic import BaseModel, TypeAdapter

from protocol.envelope import Frame
from protocol.nudges import Nudge
from protocol.sessions import SessionSummary, StartSession


def schemas() -> dict[str, object]:
    models: dict[str, type[BaseModel]] = {
        "Frame": Frame,
        "Nudge": Nudge,
        "StartSession": StartSession,
        "SessionSummary": SessionSummary,
    }
    return {name: TypeAdapter(model).json_schema() for name, model in models.items()}


if __name__ == "__main__":
    print(json.dumps(schemas(), indent=2, sort_keys=True))
