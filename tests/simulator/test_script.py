"""Reply planning: nudge detection and cutting a reply to max_tokens."""

from __future__ import annotations

from daemon.simulator.scenario import Scenario, Turn
from daemon.simulator.script import latest_note, plan_reply
from daemon.simulator.tokens import block_tokens

SCENARIO = Scenario(name="s", turns=(Turn(text="x" * 400),))


def test_latest_note_looks_only_after_the_last_assistant_turn() -> None:
    old_note = {"role": "system", "content": "old"}
    reply = {"role": "assistant", "content": "ok"}
    user = {"role": "user", "content": [{"type": "text", "text": "[Operator note from a] new"}]}
    assert latest_note([{"role": "user", "content": "t"}, old_note, reply]) is None
    assert latest_note([old_note, reply, user]) == "[Operator note from a] new"
    assert latest_note([reply, user, {"role": "system", "content": "newest"}]) == "newest"
    assert latest_note([reply, {"role": "user", "content": "plain text"}]) is None


def test_a_reply_is_cut_at_max_tokens() -> None:
    messages = [{"role": "user", "content": "go"}]
    full = plan_reply(SCENARIO, messages, seed="s", max_tokens=10_000)
    assert full.stop_reason == "end_turn"
    assert full.output_tokens == block_tokens(full.content[0])
    cut = plan_reply(SCENARIO, messages, seed="s", max_tokens=50)
    assert cut.stop_reason == "max_tokens" and 0 < cut.output_tokens <= 50
    assert block_tokens(cut.content[0]) == cut.output_tokens
    nothing = plan_reply(SCENARIO, messages, seed="s", max_tokens=0)
    assert (nothing.content, nothing.stop_reason, nothing.output_tokens) == ([], "max_tokens", 0)
