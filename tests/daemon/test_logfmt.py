"""daemon/logfmt.py through real loggers: one line per record, values escaped and capped,
tracebacks kept."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from daemon.logfmt import MESSAGE_CHARS, VALUE_CHARS, LogFormatter

FORGED = "2099-01-01 00:00:00,000 INFO steer.daemon daemon.stopped"


class Captured:
    """What one handler of the logger wrote, as lines."""

    def __init__(self, logger: logging.Logger, formatter: logging.Formatter | None) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        logger.addHandler(self.handler)

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().split("\n")[:-1]


@pytest.fixture
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, Captured, Captured]]:
    """A logger of its own; what LogFormatter made of its records, and what a plain
    handler beside it wrote."""
    logger = logging.getLogger(f"test.logfmt.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    safe = Captured(logger, LogFormatter("%(levelname)s %(message)s"))
    plain = Captured(logger, None)
    yield logger, safe, plain
    logger.removeHandler(safe.handler)
    logger.removeHandler(plain.handler)


def test_a_value_with_a_newline_cannot_forge_a_line(
    logged: tuple[logging.Logger, Captured, Captured],
) -> None:
    log, out, plain = logged
    log.info("session.created sid=%s model=%s", "s-1", f"m\x1b[2J\r\n{FORGED}")
    assert out.lines == [rf"INFO session.created sid=s-1 model=m\x1b[2J\r\n{FORGED}"]
    # Another handler of the same record sees it as it was logged.
    assert plain.lines == ["session.created sid=s-1 model=m\x1b[2J\r", FORGED]


def test_a_long_value_is_capped_and_says_how_much_was_left_out(
    logged: tuple[logging.Logger, Captured, Captured],
) -> None:
    log, out, _ = logged
    log.warning("nudge.rejected nudge=%s session=%s", "n-1", "y" * 1_000_000)
    log.warning("reason=%r", "z" * 1_000)
    big, quoted = out.lines
    kept, left_out = "y" * VALUE_CHARS, 1_000_000 - VALUE_CHARS
    assert big == f"WARNING nudge.rejected nudge=n-1 session={kept}…(+{left_out})"
    assert quoted == f"WARNING reason='{'z' * (VALUE_CHARS - 1)}…(+{1_002 - VALUE_CHARS})"


def test_numbers_keep_their_format_and_mappings_work(
    logged: tuple[logging.Logger, Captured, Captured],
) -> None:
    log, out, _ = logged
    log.info("retry_in=%.2fs count=%d ok=%s", 0.256, 3, True)
    log.info("%(who)s said %(what)r", {"who": "eve\n", "what": "a\x07b"})
    assert out.lines == ["INFO retry_in=0.26s count=3 ok=True", r"INFO eve\n said 'a\x07b'"]


def test_a_message_without_arguments_is_escaped_and_capped(
    logged: tuple[logging.Logger, Captured, Captured],
) -> None:
    log, out, _ = logged
    log.info(f"built by hand {FORGED}\n{FORGED} 100%")
    log.info("x" * (MESSAGE_CHARS + 5))
    assert out.lines == [
        rf"INFO built by hand {FORGED}\n{FORGED} 100%",
        f"INFO {'x' * MESSAGE_CHARS}…(+5)",
    ]


def test_a_traceback_stays_multi_line_after_a_one_line_message(
    logged: tuple[logging.Logger, Captured, Captured],
) -> None:
    log, out, _ = logged
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("ws.command_failed command=%s", f"x\n{FORGED}")
    first, *traceback = out.lines
    assert first == rf"ERROR ws.command_failed command=x\n{FORGED}"
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: boom"
