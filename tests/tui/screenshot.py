"""Save the README's screenshot (docs/tui.svg) with Textual's `save_screenshot`: the
dashboard at 160x48 over the recorded frames the snapshot tests use.

    .venv/bin/python -m tests.tui.screenshot
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.tui.test_snapshots import recorded_app, settled

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def save(path: Path) -> None:
    app = recorded_app("verbose-flag")
    async with app.run_test(size=(160, 48)) as pilot:
        await settled()(pilot)
        app.save_screenshot(path.name, str(path.parent))


if __name__ == "__main__":
    target = DOCS / "tui.svg"
    asyncio.run(save(target))
    print(f"saved {target}")
