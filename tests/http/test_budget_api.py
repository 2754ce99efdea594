"""The budget over HTTP: `POST /v1/sessions` with `budget_usd`/`budget_tokens`, and
`POST /v1/sessions/{ref}/budget`, with their refusals."""

from __future__ import annotations

from protocol.sessions import Budget, SessionSummary
from tests.http.conftest import ApiServer
from tests.http.test_api import error_of, events_of


def test_a_budget_set_at_start_holds_the_session_and_the_budget_route_raises_it(
    api: ApiServer,
) -> None:
    sid = api.start("[scenario:steady] http budget", budget_tokens=1)
    api.until(lambda: api.agent(sid)["status"] == "budget_reached", what="the budget")
    summary = SessionSummary.model_validate(api.http.get(f"/v1/sessions/{sid}").json())
    assert summary.budget == Budget(tokens=1) and summary.status == "budget_reached"

    for body, field in (({}, "usd, tokens"), ({"usd": -1}, "usd"), ({"tokens": 0}, "tokens")):
        message = error_of(api.http.post(f"/v1/sessions/{sid}/budget", json=body), 422, "invalid")
        assert field in message

    response = api.http.post(
        f"/v1/sessions/{sid}/budget", json={"tokens": 100_000_000, "author": "alice"}
    )
    assert response.status_code == 200, response.text
    raised = SessionSummary.model_validate(response.json())
    assert raised.budget == Budget(tokens=100_000_000)
    assert raised.status != "budget_reached"
    [budget_set] = events_of(api, sid, "budget.set")
    assert budget_set["author"] == "alice" and budget_set["budget"]["tokens"] == 100_000_000
    api.http.post(f"/v1/sessions/{sid}/veto")


def test_a_start_with_a_usd_budget_for_a_model_with_no_price_is_refused(api: ApiServer) -> None:
    response = api.http.post(
        "/v1/sessions",
        json={
            "task": "no price",
            "workdir": str(api.workdir),
            "model": "claude-unpriced-1",
            "budget_usd": 2,
        },
    )
    message = error_of(response, 409, "conflict")
    assert message.startswith("a USD budget needs the price of 'claude-unpriced-1'")
