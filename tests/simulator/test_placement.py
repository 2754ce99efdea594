"""daemon.placement: where system messages, tool results and prefills may stand."""

from __future__ import annotations

from collections.abc import Mapping

from daemon.placement import PREFILL_UNSUPPORTED, placement_problems

USER = {"role": "user", "content": "task"}
NOTE = {"role": "system", "content": "Operator note: hi"}
EFFORT = {"role": "system", "content": [], "output_config": {"effort": "low"}}
CALL = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "list_files", "input": {}}],
}
RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}
REPLY = {"role": "assistant", "content": "done"}


def problems(*messages: Mapping[str, object]) -> list[str]:
    return [str(p) for p in placement_problems(messages)]


def test_the_documented_agent_loop_pattern_is_valid() -> None:
    assert problems(USER, CALL, RESULT, NOTE) == []
    assert problems(USER, CALL, RESULT, NOTE, CALL, RESULT) == []  # CALL reused: ids repeat
    assert problems(USER, NOTE, NOTE, REPLY, USER) == []  # a group of system messages


def test_effort_only_messages_stand_anywhere() -> None:
    assert problems(EFFORT, USER, CALL, EFFORT, RESULT, EFFORT, USER) == []


def test_a_system_message_first() -> None:
    assert problems(NOTE, USER) == [
        "messages.0: a system message must immediately follow a user turn",
        "messages.0: a system message must be the last message or be immediately followed "
        "by an assistant turn",
    ]


def test_a_system_message_between_tool_use_and_tool_result() -> None:
    found = problems(USER, CALL, NOTE, RESULT)
    assert found[0].startswith("messages.1: `tool_use` ids were found without `tool_result`")
    assert "messages.2: a system message must immediately follow a user turn" in found


def test_a_system_message_followed_by_a_user_turn() -> None:
    assert problems(USER, NOTE, USER) == [
        "messages.1: a system message must be the last message or be immediately followed "
        "by an assistant turn"
    ]


def test_an_effort_message_in_a_group_does_not_excuse_it() -> None:
    assert len(problems(USER, REPLY, EFFORT, NOTE, REPLY)) == 2


def test_unanswered_and_unexpected_tool_results() -> None:
    assert problems(USER, CALL, USER)[0].startswith("messages.1: `tool_use` ids")
    assert problems(USER, REPLY, RESULT)[0].startswith(
        "messages.2: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1"
    )


def test_prefill_first_assistant_and_empty_content() -> None:
    assert problems(USER, REPLY) == [f"messages.1: {PREFILL_UNSUPPORTED}"]
    assert problems(REPLY, USER)[0] == 'messages.0: the first message must use the "user" role'
    assert problems({"role": "user", "content": []}, REPLY, USER)[0].startswith(
        "messages.0: all messages must have non-empty content"
    )
    assert problems(USER, {"role": "system", "content": []}) == [
        "messages.1: a system message must carry content or output_config"
    ]
    assert problems({"role": "tool", "content": "x"}) == [
        "messages.0.role: Input should be 'user', 'assistant' or 'system'"
    ]


def test_a_server_tool_result_may_precede_a_system_message() -> None:
    server = {
        "role": "assistant",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        ],
    }
    assert problems(USER, server, NOTE) == []
