"""Loading the file: `Settings` with a section for each generative tier in the registry,
validated with every problem listed at once, in an operator's words.

The one place the config meets the tier registry: what the registry says (the tiers a
ladder may name, the off-site ones, each generative tier's section) goes to the rules and
validators through the validation context (`Loading`), so the models themselves import
no tier.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, create_model

from gateway.config.base import Loading, from_file
from gateway.config.settings import Settings
from gateway.config.wording import order, plain
from gateway.errors import ConfigError
from gateway.tiers import registry


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
    tiers = registry()
    loading = Loading(os.environ if env is None else env, tier_names=tiers.names(),
                      offsite_tiers=tiers.offsite(),
                      sections=tuple((s.name, s.config) for s in tiers.generative()
                                     if s.config is not None))
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
    settings._tier_names = tiers.names()
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
