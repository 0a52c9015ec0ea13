"""The whole file: `Settings`, built with a section for each generative tier in the
registry, loaded from YAML with every problem listed at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache, cached_property, partial
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)

from gateway.config.base import (
    Deadlines,
    HealthConfig,
    IntentConfig,
    Loading,
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
from gateway.config.wording import order, plain
from gateway.errors import ConfigError
from gateway.tiers import registry


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

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any, info: ValidationInfo) -> Any:
        """Moved names, intent names and deadlines, and the rules across sections, on the
        file as written: they are listed even when some field elsewhere is wrong."""
        return as_written(data, context_of(info), registry())

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    # Settings are frozen, and so is the registry a Settings model is built from: these are
    # worked out once per Settings, not on each of the several calls a turn makes.
    @cached_property
    def tiers(self) -> dict[str, TierConfig]:
        """Each generative tier's section, by tier name (enabled or not)."""
        return {s.name: getattr(self, s.name) for s in registry().generative()}

    def tier_config(self, tier: str) -> TierConfig | None:
        return self.tiers.get(tier)

    def enabled_tiers(self) -> tuple[str, ...]:
        return self._enabled_tiers

    @cached_property
    def _enabled_tiers(self) -> tuple[str, ...]:
        on = {**{name: cfg.enabled for name, cfg in self.tiers.items()},
              "inventory": self.inventory.enabled}
        return tuple(t for t in registry().names() if on.get(t, True))

    def tier_model(self, tier: str) -> str:
        """The model name a tier reports as having produced its text."""
        cfg = self.tiers.get(tier)
        return cfg.model if cfg is not None else f"scout-{tier}"


def settings_model() -> type[Settings]:
    """`Settings` with a section for each generative tier in the registry."""
    return _settings_model(registry().version, registry().names())


@cache
def _settings_model(version: int, names: tuple[str, ...]) -> type[Settings]:
    sections: dict[str, Any] = {}
    for spec in registry().generative():
        assert spec.config is not None
        sections[spec.name] = (spec.config, from_file())
    return create_model("ScoutConfig", __base__=Settings, **sections)


def settings_from_dict(data: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate Settings; raises ConfigError with every problem found."""
    loading = Loading(os.environ if env is None else env, tier_names=registry().names())
    if not isinstance(data, Mapping):
        raise ConfigError(["the configuration must be a YAML mapping"])
    try:
        settings = settings_model().model_validate(data, context=loading)
    except ValidationError as exc:
        problems = [plain(settings_model(), e) for e in exc.errors()]
    else:
        problems = []
    problems = list(dict.fromkeys([*loading.problems, *problems]))
    if problems:
        raise ConfigError(sorted(problems, key=partial(order, settings_model())))
    settings._warnings = tuple(loading.warnings)
    return settings


def json_schema() -> dict[str, Any]:
    """The file's JSON Schema (draft 2020-12): `scout-gateway config schema`."""
    schema = settings_model().model_json_schema(by_alias=True, mode="validation")
    schema["title"] = "Scout gateway configuration (scout.yaml)"
    return schema


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a YAML configuration file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path} is not valid YAML: {exc}"]) from None
    return settings_from_dict(data, env)
