"""A tool the model turns against the daemon: the real `steer daemon` process, its
embedded simulator playing an agent that searches a crafted file with `(a+)+$`.

With Python's `re`, one such search over one 28-byte line held the GIL for about 15 s:
`/v1/health` went unanswered and a veto could not get through.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from daemon.paths import DAEMON_FILE, TOKEN_FILE
from tests.fixtures.steer_process import DaemonProcess

# Lines of a's that end in something else: the worst case for a backtracking `(a+)+$`.
EVIL_LINES = 550_000  # about 16 MB, so that each search takes the daemon a moment
SEARCHES = 3  # the scenario's; the last is vetoed while it runs


@contextlib.contextmanager
def api(home: Path) -> Iterator[httpx.Client]:
    url = json.loads((home / DAEMON_FILE).read_text())["url"]
    token = (home / TOKEN_FILE).read_text().strip()
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


class HealthProbe:
    """GET /v1/health from a thread of its own, again and again, timing each answer."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._done = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, name="health-probe")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        with api(self._home) as client:
            while not self._done.is_set():
                start = time.perf_counter()
                try:
                    answer = client.get("/v1/health").json()
                except httpx.HTTPError as exc:
                    answer = {"error": repr(exc)}
                self.latencies.append(time.perf_counter() - start)
                if answer.get("ok") is not True:
                    self.failures.append(repr(answer))
                self._done.wait(0.005)  # a pace, not a wait for anything


def test_a_catastrophic_search_neither_stalls_the_daemon_nor_outlasts_a_veto(
    steer_daemon: DaemonProcess, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "evil.txt").write_text(("a" * 27 + "!\n") * EVIL_LINES + "aaaa\n")
    task = "[scenario:search-catastrophic] find the lines of a's"
    results: list[dict[str, object]] = []
    statuses: list[str] = []
    searches = 0

    probe = HealthProbe(steer_daemon.home)
    with api(steer_daemon.home) as client, contextlib.ExitStack() as stack:
        stack.callback(probe.stop)
        created = client.post("/v1/sessions", json={"task": task, "workdir": str(workdir)})
        sid = created.json()["id"]
        with client.stream("GET", f"/v1/sessions/{sid}/events", params={"follow": True}) as feed:
            for line in feed.iter_lines():
                if not line.strip():
                    continue  # keep-alive
                event = json.loads(line)["event"]
                if event["type"] == "tool.call":
                    searches += 1
                    if searches == 1:  # from here on the daemon searches
                        probe.start()
                    elif searches == SEARCHES:  # the last has just started: veto it
                        vetoed = client.post(f"/v1/sessions/{sid}/veto", json={"reason": "stop"})
                        assert vetoed.status_code == 200, vetoed.text
                elif event["type"] == "tool.result":
                    results.append(event)
                elif event["type"] == "agent.status":
                    statuses.append(event["status"])
                    if event["status"] == "vetoed":
                        break
        probe.stop()
        summary = client.get(f"/v1/sessions/{sid}").json()

    assert [(r["name"], r["is_error"], r["output"]) for r in results[: SEARCHES - 1]] == [
        ("search", False, f"evil.txt:{EVIL_LINES + 1}: aaaa")
    ] * (SEARCHES - 1)
    assert statuses[-1] == "vetoed"
    assert summary["status"] == "vetoed"
    assert probe.failures == []
    assert len(probe.latencies) >= 5
    assert max(probe.latencies) < 0.1, sorted(probe.latencies)[-5:]
