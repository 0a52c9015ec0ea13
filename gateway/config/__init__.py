"""Settings: one YAML file plus secrets from the environment or files.

The file's shape is a set of pydantic models: each default is written once, on its field;
an unknown key is refused with the one that was probably meant; booleans and numbers are
YAML's own (a quoted "false" is text, not false). `scout-gateway config schema` prints the
models as a JSON Schema for editors, and `scout-gateway config check FILE` validates a file
without starting anything.

`load_settings` raises `ConfigError` listing every problem at once, in plain words, so an
operator fixes the file in one pass. Rules that span several settings (a private intent
with an off-site tier in its ladder, a model without a price) are checked on the file as
written, so they are listed even when a field elsewhere is wrong.

Each generative tier's section (`onprem`, `openai`, ...) is declared by its module in the
tier registry (`gateway.tiers`), not here: adding a tier adds its section.

The package, bottom up: `base` (what a tier's module needs: `Section`, `Secret`, the
number types, `Deadlines`, `IntentConfig`, `TierConfig`; it imports nothing above
`gateway.errors`' layer), `sections` (the other sections), `rules` (rules on the file as
written), `wording` (pydantic's errors in an operator's words), `settings` (the whole
file) and `loading` (the file read, with the registry's sections).
"""

from __future__ import annotations

from gateway.config.base import (
    OFFSITE_POLICIES,
    Count,
    Deadlines,
    Flag,
    HealthConfig,
    IntentConfig,
    Loading,
    NonNegative,
    Price,
    Replica,
    Seconds,
    Secret,
    Section,
    TierConfig,
    context_of,
)
from gateway.config.loading import json_schema, load_settings, settings_from_dict, settings_model
from gateway.config.sections import (
    PII_KINDS,
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
from gateway.config.settings import Settings
from gateway.errors import ConfigError

__all__ = [
    "OFFSITE_POLICIES", "PII_KINDS", "AuthConfig", "CacheConfig", "ConfigError", "Count",
    "Deadlines", "Flag", "HealthConfig", "HedgingKnobs", "IntentConfig", "InventoryConfig",
    "Loading", "NonNegative", "Price", "PrivacyConfig", "RateLimitConfig", "RedisConfig",
    "Replica", "Seconds", "Secret", "Section", "ServerConfig", "SessionsConfig", "Settings",
    "TierConfig", "WebSocketConfig", "context_of", "json_schema", "load_settings",
    "settings_from_dict", "settings_model",
]
