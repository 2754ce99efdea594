"""Scripted agents: which scenario answers, which turn, and how nudges land."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest
from anthropic.types import Message

import daemon.simulator
from daemon.catalog import DEFAULT_MODEL, model_info
from daemon.simulator import ScenarioError, SimulatorConfig, SimulatorServer
from daemon.simulator.scenario import ScenarioBook
from daemon.simulator.tokens import block_tokens
from tests.simulator.support import (
    LOOP_TASK,
    MODEL,
    Json,
    answer_tools,
    as_assistant,
    create,
    embedded,
)

DEMO_WORKSPACE = Path(daemon.simulator.__file__).parent / "demo_workspace"


async def run(client: anthropic.AsyncAnthropic, messages: list[Json]) -> Message:
    return await create(client, model=MODEL, max_tokens=8000, messages=messages)


def calls(message: Message) -> list[tuple[str, object]]:
    return [(b.name, b.input) for b in message.content if b.type == "tool_use"]


def texts(message: Message) -> list[str]:
    return [b.text for b in message.content if b.type == "text"]


async def test_the_demo_script_turn_by_turn(anthropic_client: anthropic.AsyncAnthropic) -> None:
    messages: list[Json] = [{"role": "user", "content": "Add a --verbose flag to greet."}]
    names = []
    while True:
        reply = await run(anthropic_client, messages)
        if reply.stop_reason == "end_turn":
            break
        names += [name for name, _ in calls(reply)]
        messages += [as_assistant(reply), answer_tools(reply)]
    assert names == ["list_files", "read_file", "edit_file", "run_command"]
    assert "python -m pytest -q" in texts(reply)[-1]
    # Past the end of an "end" script: a plain final answer, every time.
    messages += [as_assistant(reply), {"role": "user", "content": "anything else?"}]
    assert texts(await run(anthropic_client, messages)) == ["All done."]


async def test_default_scenario_when_nothing_matches(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    reply = await run(anthropic_client, [{"role": "user", "content": "tidy the readme"}])
    assert calls(reply) == [("list_files", {})]


async def test_loop_scenario_wraps_around(anthropic_client: anthropic.AsyncAnthropic) -> None:
    messages: list[Json] = [{"role": "user", "content": LOOP_TASK}]
    seen = []
    for _ in range(5):
        reply = await run(anthropic_client, messages)
        assert calls(reply) == [("run_command", {"command": "true"})]
        seen.append(texts(reply)[0])
        messages += [as_assistant(reply), answer_tools(reply)]
    assert seen[0] == seen[2] == seen[4] and seen[1] == seen[3] and seen[0] != seen[1]


async def test_a_system_message_nudge_is_acknowledged_once(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    messages: list[Json] = [{"role": "user", "content": LOOP_TASK}]
    first = await run(anthropic_client, messages)
    note = "Operator note from ana: stop after this check"
    messages += [as_assistant(first), answer_tools(first), {"role": "system", "content": note}]
    acked = await run(anthropic_client, messages)
    assert texts(acked)[0] == f"Noted: {note}"
    assert acked.stop_reason == "tool_use"  # the script carries on
    messages += [as_assistant(acked), answer_tools(acked)]
    assert not texts(await run(anthropic_client, messages))[0].startswith("Noted:")


async def test_a_user_operator_note_is_acknowledged(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    messages: list[Json] = [{"role": "user", "content": LOOP_TASK}]
    first = await run(anthropic_client, messages)
    turn = answer_tools(first)
    note = "[Operator note from ana] use tabs"
    turn["content"].append({"type": "text", "text": note})
    reply = await run(anthropic_client, [*messages, as_assistant(first), turn])
    assert texts(reply)[0] == f"Noted: {note}"


async def test_tool_use_ids_depend_only_on_the_conversation(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    one = await run(anthropic_client, [{"role": "user", "content": LOOP_TASK}])
    two = await run(anthropic_client, [{"role": "user", "content": LOOP_TASK}])
    other = await run(anthropic_client, [{"role": "user", "content": LOOP_TASK + "!"}])
    ids = [[b.id for b in m.content if b.type == "tool_use"] for m in (one, two, other)]
    assert ids[0] == ids[1] != ids[2]


def test_the_demo_edit_makes_the_workspace_tests_pass(tmp_path: Path) -> None:
    demo = ScenarioBook.load().select([{"role": "user", "content": "add --verbose"}])
    assert demo.name == "demo"
    edit = next(c for t in demo.turns for c in t.tool_calls if c.name == "edit_file")
    workspace = tmp_path / "workspace"
    shutil.copytree(DEMO_WORKSPACE, workspace)
    pytest_q = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    check = [sys.executable, "test_cli.py"]  # scripts/demo's acceptance check
    before = subprocess.run(pytest_q, cwd=workspace, capture_output=True, check=False)
    assert before.returncode == 1
    assert subprocess.run(check, cwd=workspace, capture_output=True, check=False).returncode

    cli = workspace / str(edit.input["path"])
    source = cli.read_text()
    old, new = str(edit.input["old"]), str(edit.input["new"])
    assert source.count(old) == 1
    cli.write_text(source.replace(old, new))
    after = subprocess.run(pytest_q, cwd=workspace, capture_output=True, text=True, check=False)
    assert after.returncode == 0, after.stdout
    checked = subprocess.run(check, cwd=workspace, capture_output=True, text=True, check=False)
    assert (checked.returncode, checked.stdout) == (0, "2 passed\n"), checked.stderr


def test_bundled_openings_clear_the_default_models_cache_minimum() -> None:
    book = ScenarioBook.load()
    for name in ("default", "demo"):
        scenario = next(s for s in book.scenarios if s.name == name)
        opening = {"type": "text", "text": scenario.turns[0].text}
        assert block_tokens(opening) >= model_info(DEFAULT_MODEL).min_cache_tokens


async def test_a_scenarios_directory_comes_first(tmp_path: Path) -> None:
    scenario = {
        "name": "default",
        "match": None,
        "turns": [{"text": "Mine."}],
        "after_script": "end",
        "ack_template": "Got it: {text}",
        "final_text": "Over.",
    }
    (tmp_path / "mine.json").write_text(json.dumps(scenario))
    async with embedded(SimulatorConfig(scenarios_dir=tmp_path)) as sim:
        messages: list[Json] = [{"role": "user", "content": "anything"}]
        reply = await run(sim.client, messages)
        assert texts(reply) == ["Mine."] and reply.stop_reason == "end_turn"
        messages += [
            as_assistant(reply),
            {"role": "user", "content": "more"},
            {"role": "system", "content": "be quick"},
        ]
        assert texts(await run(sim.client, messages)) == ["Got it: be quick", "Over."]
        # Bundled scenarios with other names still match.
        demo = await run(sim.client, [{"role": "user", "content": "add --verbose"}])
        assert calls(demo) == [("list_files", {})]


def test_the_marker_that_comes_first_picks_the_script() -> None:
    # A reviewer's task quotes the task under review, marker and all, after its own.
    book = ScenarioBook.load()
    quoting = "[scenario:loop] review this task: add --verbose"
    assert book.select([{"role": "user", "content": quoting}]).name == "loop"
    quoted = "add --verbose, as [scenario:loop] asked"
    assert book.select([{"role": "user", "content": quoted}]).name == "demo"


def test_a_broken_scenario_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"name": "x", "turns": []}')
    with pytest.raises(ScenarioError, match=r"broken\.json"):
        SimulatorServer(SimulatorConfig(scenarios_dir=tmp_path))
