"""The load benchmarks run end to end at a tiny size: they exit 0 and print each of
their figures. What the figures are is the scripts' business, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_bench_load_prints_every_figure_per_window() -> None:
    out = run(
        "bench_load", "--sessions", "3", "--subscribers", "1,2", "--token-rate", "400",
        "--nudge-rate", "4", "--seconds", "2", "--warmup", "1",
    )  # fmt: skip
    assert "3 streaming sessions at 400 tokens/s" in out
    assert "started 3 sessions through the API" in out
    for figure in (
        "CPU % of one core: daemon",
        "daemon RSS",
        "nudge XADD -> received   p50",
        "nudge XADD -> applied    p50",
        "event -> subscriber      p50",
        "delta -> subscriber      p50",
        "events/s",
        "model calls stretched",
        "errors: stopped sessions 0, resyncs 0, seq gaps 0, nudges never applied 0",
    ):
        assert out.count(figure) == 2, figure  # one per subscriber count
    assert "daemon.log: agent.commit_failed 0" in out


def test_bench_scale_prints_starts_memory_cli_and_restart() -> None:
    out = run(
        "bench_scale", "--starts", "4", "--concurrency", "4", "--idle", "4,6",
        "--warmup-sessions", "1", "--cli-runs", "1",
    )  # fmt: skip
    assert "started 4 sessions (4 API calls at a time)" in out
    assert "all idle" in out
    assert "memory per idle session at 4: daemon RSS" in out
    assert "memory per idle session at 6: daemon RSS" in out
    for command in ("steer ls (5 sessions)", "steer --help", "nudge SESSION text"):
        assert command in out
    assert "restart after kill -9 with 5 sessions" in out
    assert "the nudge sent while down applied" in out


def test_bench_stream_prints_its_figures_on_each_transport() -> None:
    for transport in ("httpx", "aiohttp"):
        out = run(
            "bench_stream", "--calls", "2", "--seconds", "3", "--warmup", "1",
            "--token-rate", "400", "--transport", transport,
        )  # fmt: skip
        assert f"transport: {transport}  calls: 2" in out
        for figure in ("SSE events:", "events/s:", "CPU per 1,000 SSE events:", "errors: 0"):
            assert figure in out, figure
