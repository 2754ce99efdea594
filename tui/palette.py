"""The command palette (Ctrl+P): one entry per verb."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.verbs import VERBS


class VerbCommands(Provider):
    async def discover(self) -> Hits:
        for verb in VERBS:
            yield DiscoveryHit(
                verb.title, partial(self.app.run_action, verb.action), help=verb.help
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for verb in VERBS:
            score = matcher.match(verb.title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(verb.title),
                    partial(self.app.run_action, verb.action),
                    help=verb.help,
                )
