"""The daemon's settings: one object, built once at start and passed down.

Nothing else in the daemon reads the environment (the `nudge` command, which must
start fast, reads the same STEER_* variables through `daemon.paths`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon.catalog import DEFAULT_MODEL
from daemon.paths import steer_home
from daemon.redis_clients import DEFAULT_MAX_CONNECTIONS
from protocol.sessions import MAX_BUDGET_TOKENS, MAX_BUDGET_USD, Budget


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STEER_", extra="ignore")

    #: State directory: daemon.json, the 0600 token, the embedded Redis.
    home: Path = Field(default_factory=steer_home)
    #: An external Redis; None starts (or reuses) the embedded redis-server.
    redis_url: str | None = None
    #: Connections per Redis pool (the agents' writes and the API's reads have one each);
    #: a caller that finds its pool busy waits for a connection rather than failing.
    redis_max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=2)
    key_prefix: str = "steer"
    #: Loopback by default: whoever can reach the API can steer agents that run commands.
    host: str = "127.0.0.1"
    #: 0 picks a free port; clients find it in STEER_HOME/daemon.json.
    port: int = 0
    #: Web origins allowed to call the API (CORS) and open the websocket, comma-separated,
    #: matched exactly (say `vscode-webview://...`); none by default. Native clients send
    #: no Origin at all.
    allowed_origins: str = ""
    model: str = DEFAULT_MODEL
    #: Tokens per second the embedded simulator streams at (0: as fast as it can).
    sim_token_rate: float = 40.0
    #: Extra scenario files for the embedded simulator (a directory of JSON files).
    sim_scenarios: Path | None = None
    #: A TOML price table over the built-in one (`daemon.prices`); None: STEER_HOME/
    #: prices.toml if it exists.
    prices: Path | None = None
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL")
    )
    max_retries: int = 2
    #: How long a session's owner lease lasts unrenewed: a dead daemon's sessions are
    #: taken over by a live one within about this long (renewed every third of it).
    lease_ttl_ms: int = Field(default=10_000, ge=1_000, le=600_000)
    #: Whether the agents' sandboxed commands reach the network; off: none at all, not
    #: even loopback (so not this daemon's API or Redis either).
    sandbox_network: bool = True
    #: The budget of a session started without one (`steer run --budget-usd/--budget-tokens`):
    #: it pauses as budget_reached once its agents have spent this much. None: no limit.
    budget_usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD)
    budget_tokens: int | None = Field(default=None, ge=1, le=MAX_BUDGET_TOKENS)

    @property
    def default_budget(self) -> Budget | None:
        if self.budget_usd is None and self.budget_tokens is None:
            return None
        return Budget(usd=self.budget_usd, tokens=self.budget_tokens)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.allowed_origins.split(",") if o.strip())

    @field_validator(
        "anthropic_api_key",
        "anthropic_base_url",
        "redis_url",
        "budget_usd",
        "budget_tokens",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `ANTHROPIC_API_KEY=` (as docker-compose passes an unset variable) means "no key".
        return None if value == "" else value
