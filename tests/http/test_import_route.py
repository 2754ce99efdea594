"""`POST /v1/sessions/import` over real HTTP: the one route whose body may be an
export, past the 256 KiB every other route takes, up to its own limit."""

from __future__ import annotations

from daemon.guard import IMPORT_PATH, MAX_BODY_BYTES, MAX_IMPORT_BYTES, body_limit
from tests.http.conftest import ApiServer
from tests.http.test_api import error_of

NDJSON = {"Content-Type": "application/x-ndjson"}


def test_an_import_may_be_larger_than_any_other_body(api: ApiServer) -> None:
    big = b'{"kind":"header"}\n' + b" " * (MAX_BODY_BYTES + 1)
    message = error_of(api.http.post(IMPORT_PATH, content=big, headers=NDJSON), 422, "invalid")
    assert message == "line 1: export format None; this daemon reads 1"
    error_of(api.http.post("/v1/sessions", content=big, headers=NDJSON), 413, "too_large")
    assert body_limit({"method": "POST", "path": IMPORT_PATH}) == MAX_IMPORT_BYTES == 64 << 20
    assert body_limit({"method": "POST", "path": "/v1/sessions"}) == MAX_BODY_BYTES


def test_what_is_not_an_export_is_refused_with_the_line(api: ApiServer) -> None:
    refusals = {
        b"": "not a steer export: no header and spec",
        b"\xff\xfe": "the export is not UTF-8",
        b"[1]\n": "line 1: not a JSON object",
        b'{"kind":"header","format":1,"session":"s-1","exported_at":1}\n{"kind":"frame"}': (
            "line 2: the spec must come right after the header"
        ),
    }
    for body, expected in refusals.items():
        response = api.http.post(IMPORT_PATH, content=body, headers=NDJSON)
        assert expected in error_of(response, 422, "invalid"), body
