"""Schemathesis against the real running API: the OpenAPI document is loaded from the
server (with the token) and every operation is called with generated inputs, valid
and invalid. No input may cause a 5xx, and every answer must match the document
(status, content type, body schema) and Schemathesis's other default checks.

Generated sessions start in the test's scratch workdir whatever the input says, so
the scripted agents only ever list, read or run their fixed commands there; they talk
to a simulator of their own, which keeps no request log.

This drives Hypothesis directly with each operation's strategy rather than through
`schemathesis.pytest.from_fixture`, whose subtest reporting relies on a private
pytest attribute that pytest 9.2 removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from tests.http.conftest import ApiServer

# `POST /v1/sessions/import` takes an export, JSON Lines: sent as the text generated.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

#: Examples per operation and generation mode (positive, negative).
EXAMPLES = 12
#: Pydantic's parsing of a boolean query parameter: these turn `follow` on.
TRUE_WORDS = {"1", "true", "t", "yes", "y", "on"}


def confine(case: Case[Any], api: ApiServer) -> None:
    """Keep generated requests harmless without changing whether they are valid."""
    if case.method == "POST" and case.path == "/v1/sessions" and isinstance(case.body, dict):
        workdir = case.body.get("workdir")
        if isinstance(workdir, str) and 1 <= len(workdir) <= 4096:
            case.body["workdir"] = str(api.workdir)  # any valid value, made safe
    if case.headers and "Authorization" in case.headers:
        # The document's bearer scheme made Schemathesis send a token: send the real one.
        # A negative case may leave it out on purpose, and must then be refused (401).
        case.headers["Authorization"] = api.headers["Authorization"]
    if case.method == "POST" and case.path == "/v1/sessions/import" and isinstance(case.body, str):
        # Any text is schema-valid, and few texts are exports: send a real one instead,
        # of a session this daemon has (refused as a conflict, as a valid import may be).
        case.body = api.http.get("/v1/sessions/fuzzed/export").text
    follow = case.query.get("follow") if isinstance(case.query, dict) else None
    if case.path.endswith("/events") and str(follow).lower() in TRUE_WORDS:
        case.query["follow"] = "false"  # a followed stream never ends


def fuzzer(strategy: st.SearchStrategy[Case[Any]], api: ApiServer) -> Callable[[], None]:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        confine(case, api)
        case.call_and_validate(timeout=10)

    return run


@pytest.mark.timeout(120)
def test_every_operation_with_generated_inputs(private_api: ApiServer) -> None:
    api = private_api
    schema = schemathesis.openapi.from_url(f"{api.url}/v1/openapi.json", headers=api.headers)
    api.start("[scenario:short] a session for generated requests to find", name="fuzzed")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation: APIOperation[Any, Any, Any, Any] = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzzer(operation.as_strategy(mode), api)()
            except Unsatisfiable:
                # No parameters and no body: there is no invalid input to make.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # every operation gets its turn
                notes = "\n".join(getattr(exc, "__notes__", []))
                failures.append(f"{operation.label} ({mode}): {exc}\n{notes}")
    assert operations == 23
    assert not failures, "\n\n".join(failures)
    started = [s["spec"] for s in api.http.get("/v1/sessions").json()]
    assert len(started) > 1  # generated starts were accepted...
    assert {spec["workdir"] for spec in started} == {str(api.workdir)}  # ...and confined
