"""Every /v1 route over real HTTP: success shapes, and the one error shape
`{"error": {"code", "message"}}` for unknown sessions and agents, bad bodies and
missing tokens. The control verbs run against the real supervisor and simulator:
their effect is read back from the session's summary and events."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from protocol.nudges import Nudge
from protocol.sessions import AgentSummary, SessionSpec, SessionSummary
from tests.http.conftest import ApiServer

SESSION_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/sessions/{ref}", None),
    ("GET", "/v1/sessions/{ref}/agents", None),
    ("GET", "/v1/sessions/{ref}/agents/root", None),
    ("GET", "/v1/sessions/{ref}/agents/root/messages", None),
    ("GET", "/v1/sessions/{ref}/events", None),
    ("POST", "/v1/sessions/{ref}/nudges", {"text": "no casts"}),
    ("POST", "/v1/sessions/{ref}/redirect", {"text": "stop"}),
    ("POST", "/v1/sessions/{ref}/pause", {"now": True}),
    ("POST", "/v1/sessions/{ref}/resume", {}),
    ("POST", "/v1/sessions/{ref}/veto", {"reason": "wrong approach"}),
    ("POST", "/v1/sessions/{ref}/approvals/toolu_1/approve", {}),
    ("POST", "/v1/sessions/{ref}/approvals/toolu_1/deny", {"reason": "no"}),
    ("POST", "/v1/sessions/{ref}/approve", {}),
    ("POST", "/v1/sessions/{ref}/done", {}),
    ("POST", "/v1/sessions/{ref}/archive", {"force": True}),
    ("POST", "/v1/sessions/{ref}/remove", {}),
    ("GET", "/v1/sessions/{ref}/export", None),
    ("POST", "/v1/sessions/{ref}/budget", {"tokens": 1_000}),
]


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of a refusal, after checking its status and exact shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message and "\n" not in message
    return message


def request(api: ApiServer, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return api.http.request(method, path, json=body)


# -- the guard and the OpenAPI document ------------------------------------------


def test_health(api: ApiServer) -> None:
    response = api.http.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["protocol"] == 1 and isinstance(body["pid"], int)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/v1/health", None), ("GET", "/v1/openapi.json", None)]
    + [(m, p.format(ref="s-nope"), b) for m, p, b in SESSION_ROUTES],
)
@pytest.mark.parametrize("token", [None, "wrong"])
def test_every_route_needs_the_token(
    api: ApiServer, method: str, path: str, body: dict[str, Any] | None, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=api.url, headers=headers) as anonymous:
        response = anonymous.request(method, path, json=body)
    assert response.status_code == 401
    assert "token" in response.json()["error"]["message"]


def test_guard_refusals_have_the_one_error_shape(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        response = anonymous.get("/v1/sessions")
    error_of(response, 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nope", 404, "not_found"),
        ("DELETE", "/v1/sessions", 405, "method_not_allowed"),
        ("PUT", "/v1/health", 405, "method_not_allowed"),
    ],
)
def test_framework_refusals_have_the_one_error_shape_and_their_own_codes(
    api: ApiServer, method: str, path: str, status: int, code: str
) -> None:
    response = api.http.request(method, path)
    message = error_of(response, status, code)
    assert path in message
    if status == 405:
        assert response.headers["allow"] in message


def test_openapi_declares_the_bearer_token_for_every_route(api: ApiServer) -> None:
    schema = api.http.get("/v1/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert schema["security"] == [{"bearer": []}]
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    assert operations and all("security" not in op for op in operations)  # none opts out


def test_openapi_describes_every_route_and_there_is_no_docs_ui(api: ApiServer) -> None:
    response = api.http.get("/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    routes = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert routes == {
        ("GET", "/v1/health"),
        ("GET", "/v1/sessions"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions/{ref}"),
        ("GET", "/v1/sessions/{ref}/agents"),
        ("GET", "/v1/sessions/{ref}/agents/{agent}"),
        ("GET", "/v1/sessions/{ref}/agents/{agent}/messages"),
        ("GET", "/v1/sessions/{ref}/events"),
        ("POST", "/v1/sessions/{ref}/nudges"),
        ("POST", "/v1/sessions/{ref}/redirect"),
        ("POST", "/v1/sessions/{ref}/pause"),
        ("POST", "/v1/sessions/{ref}/resume"),
        ("POST", "/v1/sessions/{ref}/veto"),
        ("POST", "/v1/sessions/{ref}/approvals/{call_id}/approve"),
        ("POST", "/v1/sessions/{ref}/approvals/{call_id}/deny"),
        ("POST", "/v1/sessions/{ref}/check"),
        ("POST", "/v1/sessions/{ref}/approve"),
        ("POST", "/v1/sessions/{ref}/done"),
        ("POST", "/v1/sessions/{ref}/archive"),
        ("POST", "/v1/sessions/{ref}/remove"),
        ("GET", "/v1/sessions/{ref}/export"),
        ("POST", "/v1/sessions/import"),
        ("POST", "/v1/sessions/{ref}/budget"),
    }
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            success = [s for s in op["responses"] if s.startswith("2")]
            assert len(success) == 1, (method, path)
            content = op["responses"][success[0]]["content"]
            assert all(c.get("schema") for c in content.values()), (method, path)
            error = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert api.http.get(path).status_code == 404


# -- refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), SESSION_ROUTES)
def test_an_unknown_session_is_404_on_every_route(
    api: ApiServer, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = request(api, method, path.format(ref="s-nope"), body)
    assert error_of(response, 404, "unknown_session") == "unknown session 's-nope'"


def test_an_ambiguous_prefix_is_404_and_names_the_candidates(api: ApiServer) -> None:
    first, second = api.start("one"), api.start("two")
    prefix = "s-"
    message = error_of(api.http.get(f"/v1/sessions/{prefix}"), 404, "unknown_session")
    assert message.startswith(f"ambiguous session {prefix!r}")
    assert first in message and second in message


@pytest.mark.parametrize(
    "path", ["/v1/sessions/{sid}/agents/a-404", "/v1/sessions/{sid}/agents/a-404/messages"]
)
def test_an_unknown_agent_is_404(api: ApiServer, path: str) -> None:
    sid = api.start("[scenario:short] unknown agent")
    response = api.http.get(path.format(sid=sid))
    assert error_of(response, 404, "unknown_agent") == f"unknown agent {sid}/a-404"


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/v1/sessions", {}, "task: Field required"),
        (
            "POST",
            "/v1/sessions",
            {"task": "x", "workdir": "/nonexistent", "approve": "some"},
            "approve",
        ),
        (
            "POST",
            "/v1/sessions",
            {"task": "x", "workdir": "/nonexistent", "max_parallel_subagents": 0},
            None,
        ),
        (
            "POST",
            "/v1/sessions",
            {"task": "x", "workdir": "/nonexistent", "colour": "red"},
            "colour",
        ),
        ("POST", "/v1/sessions/s-nope/nudges", {"text": " \n "}, "text: the text is empty"),
        ("POST", "/v1/sessions/s-nope/nudges", {"text": "x", "mode": "shout"}, "mode"),
        ("POST", "/v1/sessions/s-nope/nudges", {"text": "x", "standing": True, "agent": "a"}, None),
        ("POST", "/v1/sessions/s-nope/redirect", {}, "text: Field required"),
        ("POST", "/v1/sessions/s-nope/redirect", {"text": "x" * 16385}, "text"),
        ("POST", "/v1/sessions/s-nope/pause", {"now": "soon"}, "now"),
        ("POST", "/v1/sessions/s-nope/pause", {"agent": ""}, "agent"),
        ("POST", "/v1/sessions/s-nope/resume", {"agent": "root", "extra": 1}, "extra"),
        ("POST", "/v1/sessions/s-nope/veto", {"reason": ""}, "reason"),
        ("POST", "/v1/sessions/s-nope/veto", {"author": "a" * 65}, "author"),
        ("POST", "/v1/sessions/s-nope/approvals/c/approve", {"reason": "why"}, "reason"),
        ("POST", "/v1/sessions/s-nope/approvals/c/deny", {"reason": "r" * 2001}, "reason"),
        ("POST", f"/v1/sessions/s-nope/approvals/{'c' * 129}/deny", {}, "call_id"),
        ("POST", f"/v1/sessions/{'s' * 65}/pause", {}, "ref"),
        ("GET", "/v1/sessions/s-nope/events?since=-1", None, "since"),
        ("GET", "/v1/sessions/s-nope/events?follow=maybe", None, "follow"),
    ],
)
def test_a_bad_request_is_422_invalid_before_anything_happens(
    api: ApiServer, method: str, path: str, body: dict[str, Any] | None, where: str | None
) -> None:
    message = error_of(request(api, method, path, body), 422, "invalid")
    if where is not None:
        assert where in message
    assert api.http.get("/v1/sessions").json() == []


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"F\xff\xfe0\xff", b"[1,"])
def test_a_body_that_is_not_json_is_400_bad_frame(api: ApiServer, body: bytes) -> None:
    response = api.http.post(
        "/v1/sessions/s-nope/pause", content=body, headers={"Content-Type": "application/json"}
    )
    assert error_of(response, 400, "bad_frame")


def test_a_missing_workdir_is_422_with_the_path(api: ApiServer) -> None:
    absent = api.workdir / "absent"
    response = api.http.post("/v1/sessions", json={"task": "x", "workdir": str(absent)})
    assert error_of(response, 422, "invalid") == f"workdir is not a directory: {absent}"


# -- reading -----------------------------------------------------------------------


def test_start_then_read_the_session_its_agents_messages_and_events(api: ApiServer) -> None:
    task = "[scenario:short] read everything"
    response = api.http.post(
        "/v1/sessions", json={"task": task, "workdir": str(api.workdir), "name": "reader"}
    )
    assert response.status_code == 201
    spec = SessionSpec.model_validate(response.json())
    assert (spec.task, spec.workdir, spec.name) == (task, str(api.workdir), "reader")

    api.until(lambda: api.agent(spec.id)["status"] == "idle", what="the session to go idle")
    listed = [SessionSummary.model_validate(s) for s in api.http.get("/v1/sessions").json()]
    assert [s.spec for s in listed] == [spec]
    for ref in (spec.id, spec.id[:4], "reader"):
        summary = SessionSummary.model_validate(api.session(ref))
        assert summary.spec == spec and summary.status == "idle"

    agents = [
        AgentSummary.model_validate(a) for a in api.http.get("/v1/sessions/reader/agents").json()
    ]
    assert [a.agent for a in agents] == ["root"] and agents[0].requests == 3
    root = AgentSummary.model_validate(api.agent("reader"))
    assert root == agents[0] and root.status == "idle" and root.approvals == []

    messages = api.http.get(f"/v1/sessions/{spec.id}/agents/root/messages").json()
    assert messages[0] == {"role": "user", "content": task}
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3

    response = api.http.get(f"/v1/sessions/{spec.id}/events")
    assert response.headers["content-type"] == "application/x-ndjson"
    frames = api.events(spec.id)
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert frames[0]["event"]["type"] == "session.created"
    later = api.events(spec.id, since=frames[-2]["seq"])
    assert later == frames[-1:]
    # A summary says which seq it is current to: subscribe `since` it to follow on.
    assert SessionSummary.model_validate(api.session(spec.id)).last_seq == frames[-1]["seq"]


def test_follow_streams_new_events_live(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] follow")
    seen: list[str] = []
    with api.http.stream("GET", f"/v1/sessions/{sid}/events", params={"follow": True}) as live:
        for line in live.iter_lines():
            if not line.strip():
                continue
            kind = json.loads(line)["event"]["type"]
            seen.append(kind)
            if kind == "tool.call":
                (api.workdir / "go").touch()
            if kind == "agent.status" and json.loads(line)["event"]["status"] == "idle":
                break
    assert seen[0] == "session.created" and "tool.result" in seen


# -- the control verbs -------------------------------------------------------------


def events_of(api: ApiServer, sid: str, kind: str) -> list[dict[str, Any]]:
    return [f["event"] for f in api.events(sid) if f["event"]["type"] == kind]


def tool_running(api: ApiServer, sid: str) -> bool:
    return (api.workdir / "started").exists() and bool(events_of(api, sid, "tool.call"))


def test_a_nudge_is_queued_then_delivered(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] nudge over http")
    api.until(lambda: tool_running(api, sid), what="the tool to start")
    response = api.http.post(
        f"/v1/sessions/{sid}/nudges",
        json={"text": "no casts", "author": "alice", "nudge_id": "n-http-0001"},
    )
    assert response.status_code == 202
    nudge = Nudge.model_validate(response.json())
    assert (nudge.nudge_id, nudge.session, nudge.agent) == ("n-http-0001", sid, None)
    assert (nudge.mode, nudge.text, nudge.author) == ("steer", "no casts", "alice")
    (api.workdir / "go").touch()
    delivered = api.until(
        lambda: [
            e for e in events_of(api, sid, "nudge.delivered") if e["nudge_id"] == nudge.nudge_id
        ],
        what="the nudge to be delivered",
    )
    assert delivered[0]["agent"] == "root"


def test_a_nudge_for_an_unknown_agent_is_404(api: ApiServer) -> None:
    sid = api.start("[scenario:short] nudge a ghost")
    response = api.http.post(f"/v1/sessions/{sid}/nudges", json={"text": "x", "agent": "a-404"})
    error_of(response, 404, "unknown_agent")


def test_a_standing_nudge_reaches_the_root_agent(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] standing")
    api.until(lambda: tool_running(api, sid), what="the tool to start")
    response = api.http.post(f"/v1/sessions/{sid}/nudges", json={"text": "all", "standing": True})
    assert response.status_code == 202
    nudge = Nudge.model_validate(response.json())
    assert nudge.standing and nudge.target == f"{sid}/*"
    (api.workdir / "go").touch()
    api.until(
        lambda: [
            e for e in events_of(api, sid, "nudge.delivered") if e["nudge_id"] == nudge.nudge_id
        ],
        what="the standing nudge to be delivered",
    )


def test_pause_holds_the_agent_at_its_boundary_and_resume_lets_it_go_on(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] pause and resume")
    api.until(lambda: tool_running(api, sid), what="the tool to start")
    response = api.http.post(f"/v1/sessions/{sid}/pause", json={"author": "alice"})
    assert response.status_code == 200
    SessionSummary.model_validate(response.json())
    (api.workdir / "go").touch()  # the tool ends; the agent stops at the boundary
    api.until(lambda: api.agent(sid)["status"] == "paused", what="the agent to pause")
    requests = api.agent(sid)["requests"]
    assert requests == 1  # no model call after the tool while paused

    response = api.http.post(f"/v1/sessions/{sid}/resume", json={"agent": "root"})
    assert response.status_code == 200
    assert SessionSummary.model_validate(response.json()).status != "paused"
    api.until(lambda: api.agent(sid)["status"] == "idle", what="the agent to finish")
    assert api.agent(sid)["requests"] == 2


def test_pause_now_of_one_agent(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] pause now")
    api.until(lambda: tool_running(api, sid), what="the tool to start")
    response = api.http.post(f"/v1/sessions/{sid}/pause", json={"agent": "root", "now": True})
    assert response.status_code == 200
    (api.workdir / "go").touch()
    api.until(lambda: api.agent(sid)["status"] == "paused", what="the agent to pause")
    response = api.http.post(f"/v1/sessions/{sid}/resume")
    assert response.status_code == 200
    api.until(lambda: api.agent(sid)["status"] == "idle", what="the agent to finish")


def test_veto_ends_the_session_for_good(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] veto")
    api.until(lambda: tool_running(api, sid), what="the tool to start")
    response = api.http.post(
        f"/v1/sessions/{sid}/veto", json={"reason": "wrong approach", "author": "alice"}
    )
    assert response.status_code == 200
    api.until(lambda: api.session(sid)["status"] == "vetoed", what="the session to be vetoed")
    assert api.agent(sid)["status"] == "vetoed"
    actions = events_of(api, sid, "operator.action")
    assert any(a["verb"] == "veto" and a["reason"] == "wrong approach" for a in actions)
    error_of(api.http.post(f"/v1/sessions/{sid}/resume"), 409, "conflict")


def test_redirect_interrupts_the_tool_and_delivers_at_once(api: ApiServer) -> None:
    sid = api.start("[scenario:slow-tool] redirect")
    api.until(lambda: tool_running(api, sid), what="the tool to start")
    response = api.http.post(
        f"/v1/sessions/{sid}/redirect", json={"text": "stop waiting", "author": "alice"}
    )
    assert response.status_code == 202
    nudge = Nudge.model_validate(response.json())
    assert (nudge.mode, nudge.text, nudge.session) == ("redirect", "stop waiting", sid)
    # Never touch "go": only the redirect can end the tool.
    api.until(
        lambda: [
            e for e in events_of(api, sid, "nudge.delivered") if e["nudge_id"] == nudge.nudge_id
        ],
        what="the redirect to be delivered",
    )
    assert not (api.workdir / "finished").exists()


def wait_for_approval(api: ApiServer, sid: str, tool: str) -> str:
    """The call id of the pending approval for `tool`, once there is one."""

    def pending() -> str | None:
        root = api.agent(sid)
        calls = [a["call_id"] for a in root["approvals"] if a["name"] == tool]
        return calls[0] if root["status"] == "waiting" and calls else None

    call_id: str = api.until(pending, what=f"{tool} to wait for approval")
    return call_id


def test_approve_and_deny_pending_tool_calls(api: ApiServer) -> None:
    sid = api.start("[scenario:short] approvals", approve="all", max_parallel_subagents=2)
    spec = api.session(sid)["spec"]
    assert (spec["approve"], spec["max_parallel_subagents"]) == ("all", 2)

    listing = wait_for_approval(api, sid, "list_files")
    assert api.agent(sid)["requests"] == 1
    response = api.http.post(
        f"/v1/sessions/{sid}/approvals/{listing}/approve", json={"author": "alice"}
    )
    assert response.status_code == 200
    SessionSummary.model_validate(response.json())

    command = wait_for_approval(api, sid, "run_command")
    response = api.http.post(
        f"/v1/sessions/{sid}/approvals/{command}/deny",
        json={"agent": "root", "reason": "no shell today", "author": "alice"},
    )
    assert response.status_code == 200
    api.until(lambda: api.agent(sid)["status"] == "idle", what="the session to finish")

    results = {e["call_id"]: e for e in events_of(api, sid, "tool.result")}
    assert not results[listing]["is_error"]
    assert command not in results or results[command]["is_error"]
    decided = {e["call_id"]: e for e in events_of(api, sid, "approval.decided")}
    assert decided[listing]["approved"] and decided[listing]["author"] == "alice"
    assert not decided[command]["approved"] and decided[command]["reason"] == "no shell today"
    messages = api.http.get(f"/v1/sessions/{sid}/agents/root/messages").json()
    [denied] = [
        block
        for m in messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for block in m["content"]
        if block.get("tool_use_id") == command
    ]
    assert denied["is_error"] and "no shell today" in str(denied["content"])
    assert "checked" not in str(denied["content"])  # the denied command never ran


def test_approve_ends_a_reviewed_session_awaiting_approval_as_done(api: ApiServer) -> None:
    idle = api.start("[scenario:short] nothing to approve")
    api.until(lambda: api.agent(idle)["status"] == "idle", what="the session to finish")
    message = error_of(api.http.post(f"/v1/sessions/{idle}/approve"), 409, "conflict")
    assert message.endswith("is idle, not awaiting approval")

    sid = api.start("[scenario:review-fix] approve over http", review_rounds=1)
    api.until(
        lambda: api.agent(sid)["status"] == "awaiting_approval",
        what="the review to end",
        timeout=30,
    )
    response = api.http.post(f"/v1/sessions/{sid}/approve", json={"author": "alice"})
    assert response.status_code == 200
    assert SessionSummary.model_validate(response.json()).status == "done"
    [approved] = [e for e in events_of(api, sid, "operator.action") if e["verb"] == "approve"]
    assert approved["author"] == "alice"
    [review] = events_of(api, sid, "review.finished")
    assert (review["round"], review["verdict"]) == (1, "last_round")


def test_deciding_a_call_that_is_not_pending_is_409(api: ApiServer) -> None:
    sid = api.start("[scenario:short] nothing pending")
    api.until(lambda: api.agent(sid)["status"] == "idle", what="the session to finish")
    for verb in ("approve", "deny"):
        response = api.http.post(f"/v1/sessions/{sid}/approvals/toolu_nope/{verb}")
        error_of(response, 409, "not_pending")
