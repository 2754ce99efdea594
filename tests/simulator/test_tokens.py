"""The deterministic token rule and the rendered prompt."""

from __future__ import annotations

from collections.abc import Mapping

from daemon.simulator.request import parse_request
from daemon.simulator.tokens import Prompt, block_tokens, canonical_json, render_prompt


def test_a_block_costs_a_quarter_of_its_canonical_json_bytes() -> None:
    block = {"type": "text", "text": "héllo", "cache_control": {"type": "ephemeral"}}
    canonical = canonical_json(block)
    assert canonical == '{"text":"héllo","type":"text"}'
    assert block_tokens(block) == -(-len(canonical.encode()) // 4) == 8
    assert block_tokens({}) == 1


def test_string_content_is_one_text_block_and_settings_cost_nothing() -> None:
    def prompt_of(body: dict[str, object]) -> int:
        request = parse_request(body, betas=frozenset(), count_only=True)
        return render_prompt(request).total_tokens

    body: dict[str, object] = {
        "model": "claude-opus-5-5",
        "system": "Be brief.",
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    as_blocks = {
        **body,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tool_choice": {"type": "auto"},
    }
    expected = sum(
        block_tokens(b)
        for b in (
            {"name": "t", "input_schema": {"type": "object"}},
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "hi"},
        )
    )
    assert prompt_of(body) == prompt_of(as_blocks) == expected


def test_cleared_turn_scoped_messages_render_nothing() -> None:
    scoped = {"role": "system", "content": "just this turn", "clear_at": "next_user_message"}
    betas = frozenset({"mid-conversation-system-clear-at-2026-08-21"})

    def render(*messages: Mapping[str, object]) -> Prompt:
        body = {"model": "claude-opus-5-5", "messages": list(messages)}
        return render_prompt(parse_request(body, betas=betas, count_only=True))

    user, reply, later = (
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    )
    live = render(user, scoped)
    cleared = render(user, scoped, reply, later)
    tokens = {t: block_tokens({"type": "text", "text": t}) for t in ("a", "b", "c")}
    assert live.total_tokens == tokens["a"] + block_tokens(
        {"type": "text", "text": "just this turn"}
    )
    assert cleared.total_tokens == tokens["a"] + tokens["b"] + tokens["c"]
    assert not live.positions[1].markable  # automatic caching walks past it
