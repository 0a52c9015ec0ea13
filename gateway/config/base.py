"""The configuration's building blocks: what a tier's module needs to declare its section.

`Section` (unknown keys refused, frozen), `Secret` (never prints itself), the number types
as YAML writes them, `Loading` (the environment and the problems found while validating),
`Deadlines`, `IntentConfig`, `TierConfig` (the base of each generative tier's section) and
`HealthConfig` (what a tier's probes are given).
This module imports nothing from the gateway but its errors' module's layer: providers and
the tier registry build on it without reaching the whole `Settings`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

# Where an intent's turns may go: `allowed` off-site as written, `redacted` off-site with
# personal data replaced by placeholders, `never` on-site only (on-prem, cache, static).
OFFSITE_POLICIES = ("allowed", "redacted", "never")


def default_offsite(private: bool) -> str:
    """An intent's policy when it sets none: never off-site if private, else redacted."""
    return "never" if private else "redacted"

# Numbers as YAML writes them: no quoted "5", no `true` for 1.
Seconds = Annotated[float, Strict(), Field(gt=0)]
NonNegative = Annotated[float, Strict(), Field(ge=0)]
Count = Annotated[int, Strict(), Field(gt=0)]
Flag = StrictBool


class Secret:
    """A secret value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass
class Loading:
    """What validation reads and reports besides the file: the environment (secrets) and
    the problems and warnings found by rules that span fields. Passed as pydantic's
    validation context."""

    env: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What the tier registry says, when the whole file is loaded (gateway.config.loading):
    # the tiers a ladder may name, the off-site ones, and each generative tier's section.
    tier_names: tuple[str, ...] | None = None
    offsite_tiers: frozenset[str] = frozenset()
    sections: tuple[tuple[str, type[TierConfig]], ...] = ()

    def from_env(self, name: str) -> str:
        """A secret: `NAME`, or the file that `NAME_FILE` names (the convention of Docker's
        official images, so compose `secrets:` work without putting the value in the
        container's environment, where `docker inspect` shows it)."""
        value = self.env.get(name, "").strip()
        if value or not self.env.get(f"{name}_FILE"):
            return value
        path = self.env[f"{name}_FILE"]
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            self.problems.append(f"{name}_FILE: cannot read {path}: {exc.strerror}")
            return ""

    def secret(self, name: str) -> Secret | None:
        value = self.from_env(name)
        return Secret(value) if value else None


def context_of(info: ValidationInfo) -> Loading:
    """The context of this validation; a model built in code (tests) reads no environment."""
    ctx = info.context
    return ctx if isinstance(ctx, Loading) else Loading(env={})


class Section(BaseModel):
    """One mapping of the file: unknown keys refused, values fixed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # What loading found beside the file (secrets from the environment): read through
    # `resolved` properties, never part of the file or its schema.
    _found: dict[str, Any] = PrivateAttr(default_factory=dict)


def refused_inline(data: Any, key: str, info: ValidationInfo, problem: str) -> Any:
    """A secret written in the file: reported (never echoed), and left out."""
    if isinstance(data, Mapping) and key in data:
        context_of(info).problems.append(problem)
        data = {k: v for k, v in data.items() if k != key}
    return data


def resolved(name: str, doc: str) -> Any:
    """A value found while loading (a secret, a path), read as an attribute."""
    return property(lambda self: self._found.get(name), doc=doc)


def from_file(alias: str | None = None) -> Any:
    """A section's default: its own defaults, validated like a written one (so the
    environment's secrets are read for it too)."""
    return Field(default_factory=dict, validate_default=True, alias=alias)


class Deadlines(Section):
    """The three deadlines that guard one tier's stream, in seconds."""

    headers_s: Seconds = 2.0
    first_token_s: Seconds = 5.0
    gap_s: Seconds = 10.0


class Price(Section):
    """USD per one million tokens."""

    input: NonNegative = 0.0
    output: NonNegative = 0.0


class Match(Section):
    keywords: list[str] = []
    patterns: list[str] = []
    # Look-alikes: what these patterns match is blanked out before the keywords and
    # patterns read the text ("tax credit", "CARB approved" are not a customer's credit).
    ignore: list[str] = []


class IntentConfig(Section):
    """One intent: how it is recognised, where its turns may go and how long each may take."""

    name: SkipJsonSchema[str] = ""   # the key it is written under
    ladder: tuple[str, ...] = Field(min_length=1)
    static_reply: str
    deadlines: Deadlines = from_file()
    match: Match = Match()
    cacheable: Flag = False
    cache_ttl_s: Seconds = 3600.0
    private: Flag = False
    # unset: never if private, else redacted
    offsite: Literal["allowed", "redacted", "never"] = "redacted"
    ground: Flag = False  # put the matching stock in the models' system prompt
    _patterns: tuple[re.Pattern[str], ...] = PrivateAttr(default=())

    @field_validator("static_reply")
    @classmethod
    def _reply(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("every intent needs a static reply (the last resort)")
        return value

    @field_validator("ladder")
    @classmethod
    def _ladder(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        known = context_of(info).tier_names
        unknown = [t for t in value if known is not None and t not in known]
        if unknown and known is not None:
            raise ValueError(f"unknown tier {unknown[0]!r} (known: {', '.join(known)})")
        if len(set(value)) != len(value):
            raise ValueError("names a tier twice")
        return value

    @field_validator("match")
    @classmethod
    def _patterns_compile(cls, value: Match) -> Match:
        for pat in [*value.patterns, *value.ignore]:
            try:
                re.compile(pat, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"patterns: {pat!r} is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_offsite(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("offsite") is None:
            data = {**data, "offsite": default_offsite(data.get("private") is True)}
        return data

    @model_validator(mode="after")
    def _settle(self) -> IntentConfig:
        self._patterns = tuple(re.compile(p, re.IGNORECASE) for p in self.match.patterns)
        return self

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(k.lower() for k in self.match.keywords)

    @property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        return self._patterns


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    base_url: str  # serves /health, /v1/models, /metrics (nginx's /replicas/NAME, or direct)


class TierConfig(Section):
    """What every generative tier's section has: a model, its key, what it can do.

    A tier's module subclasses this with its own fields and defaults (`OnpremConfig`,
    `OpenAIConfig`, ...) and names it in its `TierSpec`. The key itself never goes in the
    file: `api_key_env` names a variable, `api_key_file` a file (re-read on change).
    """

    section: ClassVar[str] = ""            # its name in the file: the tier's name
    key_required: ClassVar[bool] = False   # enabled without naming a key is an error

    enabled: Flag = True
    model: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    api_key_rotated_at: datetime.date | None = None   # one warning when the key gets old
    supports_tools: Flag = False
    supports_response_format: Flag = False

    @model_validator(mode="before")
    @classmethod
    def _no_inline_key(cls, data: Any, info: ValidationInfo) -> Any:
        return refused_inline(data, "api_key", info, f"{cls.section or cls.__name__}.api_key: "
                               "secrets never go in the file; use api_key_env or api_key_file")

    @model_validator(mode="after")
    def _resolve_key(self, info: ValidationInfo) -> TierConfig:
        loading = context_of(info)
        where = self.section or type(self).__name__
        if self.enabled and self.key_required and not (self.api_key_env or self.api_key_file):
            loading.problems.append(f"{where}: enabled but names no api_key_env or api_key_file")
        if self.api_key_env:
            self._found["api_key"] = loading.secret(self.api_key_env)
        if self.api_key is None and self.api_key_file:
            try:
                value = Path(self.api_key_file).read_text().strip()
            except OSError as exc:
                loading.problems.append(f"{where}.api_key_file: cannot read "
                                        f"{self.api_key_file}: {exc.strerror}")
                value = ""
            if value:
                self._found.update(api_key=Secret(value), watch_file=self.api_key_file)
        if self.enabled and self.api_key is None and (self.api_key_env or self.api_key_file):
            source = (f"environment variable {self.api_key_env}" if self.api_key_env
                      else f"file {self.api_key_file}")
            loading.problems.append(f"{where}: enabled but its API key is missing: set {source}")
        return self

    api_key = resolved("api_key", "The key now (a Secret), or None.")
    watch_file = resolved("watch_file", "The key file to watch for rotation: only when the "
                                        "key really came from it.")

    @property
    def rotated_at(self) -> float | None:
        day = self.api_key_rotated_at
        if day is None:
            return None
        return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


class HealthConfig(Section):
    interval_s: Seconds = 2.0
    jitter: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.2  # ± this share of the interval
    timeout_s: Seconds = 1.0         # one attempt per probe, never retried
    # A down target is probed less often, up to this. At the interval (no backoff), a
    # target that is well again is seen within one interval: its traffic returns then.
    backoff_max_s: Seconds = 2.0
    # Good probes in a row before a bad target is up again. One: a target back from a
    # failure is on probation (gateway.health.outliers), which is what stops flapping.
    rise: Count = 1
    # The replica's queue (vLLM's waiting, llama.cpp's deferred) above this: busy.
    busy_waiting: Annotated[int, Strict(), Field(ge=0)] = 8
    eject_after: Count = 3           # live-traffic failures in a row that eject a tier
    eject_ttl_s: Seconds = 10.0      # the first ejection's length (longer each time after)
    webhook_url_env: str = "SCOUT_ALERT_WEBHOOK"   # Slack-compatible; optional
    fallback_window_s: Seconds = 900.0
    fallback_threshold: Seconds = 0.5     # share of answers not from on-prem that alerts
    fallback_min_requests: Count = 3

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> HealthConfig:
        loading = context_of(info)
        if self.timeout_s >= self.interval_s:
            loading.problems.append(f"health.timeout_s ({self.timeout_s:g}) must be shorter "
                                    f"than interval_s ({self.interval_s:g})")
        hook = self._found["webhook_url"] = loading.secret(self.webhook_url_env)
        if hook is not None and not re.match(r"^https?://", hook.get()):
            loading.problems.append(f"health: {self.webhook_url_env} must be an http(s) URL")
        return self

    webhook_url = resolved("webhook_url", "The alert webhook (a Secret), or None.")
