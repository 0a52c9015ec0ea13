"""The whole file: `Settings`. Its generative tiers' sections are added from the tier
registry when a file is loaded (gateway.config.loading), so this module knows no tier."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from gateway.config.base import (
    Deadlines,
    HealthConfig,
    IntentConfig,
    Price,
    TierConfig,
    context_of,
    from_file,
)
from gateway.config.rules import as_written
from gateway.config.sections import (
    AuthConfig,
    CacheConfig,
    HedgingKnobs,
    InventoryConfig,
    PrivacyConfig,
    RateLimitConfig,
    RedisConfig,
    ServerConfig,
    SessionsConfig,
    WebSocketConfig,
)


class Settings(BaseModel):
    """The whole file. Each generative tier's section is added by the registry
    (`settings_model`); `tiers` maps a tier's name to its section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: ServerConfig = from_file()
    cache: CacheConfig = from_file()
    redis: RedisConfig = from_file()
    sessions: SessionsConfig = from_file()
    auth: AuthConfig = from_file()
    ws: WebSocketConfig = from_file(alias="websocket")
    health: HealthConfig = from_file()
    rate_limits: RateLimitConfig = from_file()
    deadlines: Deadlines = from_file()   # every intent's, unless it sets its own
    intents: dict[str, IntentConfig]
    default_intent: str = "default"
    prices: dict[str, Price] = {}        # USD per 1M tokens, per model name
    privacy: PrivacyConfig = from_file()
    hedging: HedgingKnobs = from_file()
    inventory: InventoryConfig = from_file()
    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _tier_names: tuple[str, ...] = PrivateAttr(default=())   # the registry's, in its order

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any, info: ValidationInfo) -> Any:
        """Moved names, intent names and deadlines, and the rules across sections, on the
        file as written: they are listed even when some field elsewhere is wrong."""
        return as_written(data, context_of(info))

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    # Settings are frozen, and so is the registry a Settings model is built from: these are
    # worked out once per Settings, not on each of the several calls a turn makes.
    @cached_property
    def tiers(self) -> dict[str, TierConfig]:
        """Each generative tier's section, by tier name (enabled or not): the sections the
        registry added (gateway.config.loading), in its order."""
        return {name: getattr(self, name) for name, f in type(self).model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, TierConfig)}

    def tier_config(self, tier: str) -> TierConfig | None:
        return self.tiers.get(tier)

    def enabled_tiers(self) -> tuple[str, ...]:
        return self._enabled_tiers

    @cached_property
    def _enabled_tiers(self) -> tuple[str, ...]:
        on = {**{name: cfg.enabled for name, cfg in self.tiers.items()},
              "inventory": self.inventory.enabled}
        return tuple(t for t in self._tier_names if on.get(t, True))

    def tier_model(self, tier: str) -> str:
        """The model name a tier reports as having produced its text."""
        cfg = self.tiers.get(tier)
        return cfg.model if cfg is not None else f"scout-{tier}"
