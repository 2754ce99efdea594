"""steer's Textual dashboard. It knows the daemon only through the websocket API
(protocol/ and tui/link.py); `steer tui` finds the daemon and calls `tui`."""

from __future__ import annotations

from tui.link import Credentials


def tui(
    url: str,
    token: str,
    *,
    credentials: Credentials | None = None,
    session: str | None = None,
    author: str = "operator",
    archived: bool = False,
) -> int:
    """Run the dashboard against the daemon at `url` (its http:// address) until the
    user quits. `credentials` re-reads the address and token before each reconnect
    (a restarted daemon has a new token); `session` is selected first; archived
    sessions are listed only with `archived` (say to open an archived `session`)."""
    from tui.app import SteerApp
    from tui.link import Link
    from tui.model import DashboardModel

    model = DashboardModel()
    link = Link(model, url=url, token=token, credentials=credentials, archived=archived)
    SteerApp(model, link, author=author, select=session).run()
    return 0


__all__ = ["tui"]
