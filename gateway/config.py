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
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StrictBool,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from gateway.errors import ConfigError

# Where an intent's turns may go: `allowed` off-site as written, `redacted` off-site with
# personal data replaced by placeholders, `never` on-site only (on-prem, cache, static).
OFFSITE_POLICIES = ("allowed", "redacted", "never")
PII_KINDS = ("email", "phone", "card", "ssn", "dl", "vin", "plate", "dob", "address",
             "bank_account", "routing", "income", "credit_score", "name")

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


def _refused_inline(data: Any, key: str, info: ValidationInfo, problem: str) -> Any:
    """A secret written in the file: reported (never echoed), and left out."""
    if isinstance(data, Mapping) and key in data:
        context_of(info).problems.append(problem)
        data = {k: v for k, v in data.items() if k != key}
    return data


def resolved(name: str, doc: str) -> Any:
    """A value found while loading (a secret, a path), read as an attribute."""
    return property(lambda self: self._found.get(name), doc=doc)


def _from_file(alias: str | None = None) -> Any:
    """A section's default: its own defaults, validated like a written one (so the
    environment's secrets are read for it too)."""
    return Field(default_factory=dict, validate_default=True, alias=alias)


class Deadlines(Section):
    """The three deadlines that guard one tier's stream, in seconds."""

    headers_s: Seconds = 2.0
    first_token_s: Seconds = 5.0
    gap_s: Seconds = 10.0


def _deadline_rules(where: str, raw: Mapping[str, Any], problems: list[str]) -> None:
    """Deadlines that can't work together, on the values as written (beside a bad field)."""
    d = {k: raw.get(k, f.default) for k, f in Deadlines.model_fields.items()}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in d.values()):
        return
    if d["headers_s"] > d["first_token_s"]:
        problems.append(f"{where}: headers_s ({d['headers_s']:g}) cannot be longer than "
                        f"first_token_s ({d['first_token_s']:g}): no token can arrive before "
                        "the headers")
    for key, value in d.items():
        if value > 600:
            problems.append(f"{where}.{key}: {value:g} s is longer than any client waits "
                            "(max 600)")


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
    deadlines: Deadlines = _from_file()
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
    def _ladder(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from gateway.tiers import registry
        known = registry().names()
        unknown = [t for t in value if t not in known]
        if unknown:
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
            data = {**data, "offsite": "never" if data.get("private") is True else "redacted"}
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


def _intent_rules(name: str, raw: Mapping[str, Any], offsite_tiers: frozenset[str],
                  problems: list[str]) -> None:
    """The rules between an intent's own fields, on the values as written."""
    where = f"intents.{name}"
    private = raw.get("private") is True
    offsite = raw.get("offsite") or ("never" if private else "redacted")
    ladder = raw.get("ladder")
    ladder = set(map(str, ladder)) if isinstance(ladder, list | tuple) else set()
    if private and offsite != "never" and offsite in OFFSITE_POLICIES:
        problems.append(f"{where}: is private, so offsite must be never (got {offsite})")
    if offsite == "never" and offsite_tiers & ladder:
        why = "is private" if private else "has offsite: never"
        problems.append(f"{where}: {why}, so its ladder must not contain "
                        f"{', '.join(sorted(offsite_tiers & ladder))}")
    if private and raw.get("cacheable") is True:
        problems.append(f"{where}: is private, so it cannot be cacheable")


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
        return _refused_inline(data, "api_key", info, f"{cls.section or cls.__name__}.api_key: "
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


class CacheConfig(Section):
    max_entries: Count = 10_000
    # How long an answer is kept past its fresh TTL for the ladder's stale tier.
    stale_ttl_s: NonNegative = 86_400.0
    # How long identical questions wait for the one that went upstream.
    stampede_wait_s: Seconds = 5.0


class HedgingKnobs(Section):
    floor_s: Seconds = 0.3
    factor: Annotated[float, Strict(), Field(ge=1)] = 1.5  # below 1 hedges before the p95
    budget: Annotated[float, Strict(), Field(ge=0, le=1)] = 0.05  # a share of requests
    window_s: Seconds = 300.0


Synonym = Literal["make", "model", "body_style", "fuel"]
_SYNONYM_FIELDS = {"make": "makes", "model": "models", "body_style": "body_styles",
                   "fuel": "fuels"}


class InventoryConfig(Section):
    enabled: Flag = True
    dsn_env: str = "INVENTORY_DSN"     # PostgreSQL; unset: SQLite
    sqlite_path: str = ""              # "" keeps it in memory, loaded from seed_csv at start
    seed: str = Field(default="builtin", alias="seed_csv")  # loaded when the store is empty
    max_results: Count = 5
    max_age_h: Seconds = 24.0
    link: str = "https://www.lakesidemotors.example/inventory/{stock_number}"
    ground_rows: Count = 8
    ground_reuse_s: Seconds = 2.0   # a grounding lookup serves the same filters this long
    # a phrase → {make|model|body_style|fuel: value}
    phrases: dict[str, dict[Synonym, str]] = Field(default={}, alias="synonyms")

    @field_validator("link")
    @classmethod
    def _link(cls, value: str) -> str:
        if "{stock_number}" not in value:
            raise ValueError("must contain {stock_number}")
        return value

    @field_validator("phrases")
    @classmethod
    def _one_each(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for phrase, target in value.items():
            if len(target) != 1:
                raise ValueError(f"{phrase}: must be one of make, model, body_style, fuel: value")
        return value

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> InventoryConfig:
        loading = context_of(info)
        dsn = loading.from_env(self.dsn_env)
        if dsn and not re.match(r"^postgres(ql)?://", dsn):
            loading.problems.append(f"inventory: {self.dsn_env} must be a postgresql:// URL")
        self._found["dsn"] = Secret(dsn) if dsn else None
        if self.seed_csv and not Path(self.seed_csv).is_file():
            loading.problems.append(f"inventory.seed_csv: {self.seed_csv} does not exist")
        return self

    dsn = resolved("dsn", "PostgreSQL's DSN (a Secret), or None for SQLite.")

    @property
    def seed_csv(self) -> str:
        if self.seed == "builtin":
            return str(Path(__file__).parent / "data" / "inventory.csv")
        return self.seed

    @property
    def synonyms(self) -> tuple[tuple[str, str, str], ...]:
        return tuple((phrase.lower(), _SYNONYM_FIELDS[k], v)
                     for phrase, target in self.phrases.items() for k, v in target.items())


class PrivacyModelConfig(Section):
    """The similarity model that reads each user turn after the keyword rules
    (gateway/routing/semantic.py)."""

    enabled: Flag = True
    # A turn scoring at least threshold - margin is private: the margin is how much doubt
    # fails closed (docs/privacy.md gives what each costs in false positives).
    threshold: Annotated[float, Strict(), Field(ge=-1, le=1)] = 0.06
    margin: Annotated[float, Strict(), Field(ge=0, le=1)] = 0.01
    examples_file: str = ""   # staff's own labelled examples, added to the shipped ones


class PrivacyConfig(Section):
    # Personal data replaced before an off-site tier sees it, per kind (all on by default).
    switches: dict[str, StrictBool] = Field(default={}, alias="redact")
    model: PrivacyModelConfig = PrivacyModelConfig()
    # The dealership's own phone numbers: the model may see them (they are in its replies).
    business_phones: list[str] = []

    @field_validator("switches", mode="before")
    @classmethod
    def _kinds(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, Mapping):
            for kind, on in value.items():
                if kind not in PII_KINDS:
                    context_of(info).problems.append(
                        f"privacy.redact.{kind}: unknown kind (known: {', '.join(PII_KINDS)})")
                elif not isinstance(on, bool):
                    context_of(info).problems.append(
                        f"privacy.redact.{kind}: must be true or false, got {on!r}")
            return {k: v for k, v in value.items() if k in PII_KINDS and isinstance(v, bool)}
        return value

    @property
    def redact(self) -> frozenset[str]:
        return frozenset(k for k in PII_KINDS if self.switches.get(k, True))


class RedisConfig(Section):
    """One Redis (REDIS_URL), or a primary found through Redis Sentinel (REDIS_SENTINELS:
    host:port,host:port,...), so losing the primary loses no conversation for longer than
    the failover takes."""

    url_env: str = "REDIS_URL"      # e.g. redis://:password@10.0.0.5:6379/0
    timeout_ms: Annotated[float, Strict(), Field(gt=0)] = 50
    sentinels_env: str = "REDIS_SENTINELS"
    sentinel_master: str = "scout"           # the master name the sentinels monitor
    password_env: str = "REDIS_PASSWORD"     # the data nodes' password (sentinel mode)
    sentinel_password_env: str = "REDIS_SENTINEL_PASSWORD"   # the sentinels' own, if any
    db: Annotated[int, Strict(), Field(ge=0)] = 0

    @model_validator(mode="before")
    @classmethod
    def _no_inline_url(cls, data: Any, info: ValidationInfo) -> Any:
        return _refused_inline(data, "url", info, "redis.url: a Redis URL may hold a password; "
                               "name it with url_env instead")

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> RedisConfig:
        loading = context_of(info)
        url = loading.from_env(self.url_env)
        if url and not re.match(r"^(redis|rediss|unix)://", url):
            loading.problems.append(f"redis: {self.url_env} must be a redis://, rediss:// or "
                                    "unix:// URL")
        self._found["url"] = Secret(url) if url else None
        sentinels = []
        for item in filter(None, (x.strip() for x in loading.from_env(self.sentinels_env)
                                  .split(","))):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                loading.problems.append(f"redis: {self.sentinels_env} must list sentinels as "
                                        f"host:port,host:port; got {item!r}")
                continue
            sentinels.append((host.strip("[]"), int(port)))
        if url and sentinels:
            loading.problems.append(f"redis: set {self.url_env} or {self.sentinels_env}, not "
                                    "both")
        self._found.update(sentinels=tuple(sentinels),
                           password=loading.secret(self.password_env),
                           sentinel_password=loading.secret(self.sentinel_password_env))
        return self

    url = resolved("url", "Redis' URL (a Secret); None: the in-process store (demo, one box).")
    sentinels = resolved("sentinels", "(host, port) of each sentinel; () without Sentinel.")
    password = resolved("password", "The data nodes' password in sentinel mode (a Secret).")
    sentinel_password = resolved("sentinel_password", "The sentinels' password (a Secret).")

    @property
    def configured(self) -> bool:
        """Is there a Redis at all (one URL, or sentinels)?"""
        return self.url is not None or bool(self.sentinels)

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000


class SessionsConfig(Section):
    ttl_s: Seconds = 86_400.0
    max_turns: Count = 20           # user+assistant pairs kept and sent upstream
    max_prompt_tokens: Count = 3000  # oldest turns are dropped past this (estimated)
    answer_ttl_s: Seconds = 3600.0  # finished answers kept for a client that reconnects


class AuthConfig(Section):
    api_keys_env: str = "SCOUT_API_KEYS"   # "label:key,label:key"
    api_keys_file: str | None = None    # "label key" or "label sha256:<hex>" per line; reloaded
    # Signs session ids and WebSocket tokens; the same on every gateway process.
    signing_secret_env: str = "SCOUT_SIGNING_SECRET"
    ws_token_ttl_s: Seconds = 60.0
    allowed_origins: tuple[str, ...] = ()
    demo_tokens: Flag = False           # /api/demo-token hands out WebSocket tokens (demo only)
    allow_anonymous: Flag = False       # no API key needed at all (never on the internet)
    staff_keys_env: str = "SCOUT_STAFF_KEYS"  # "label:token,..." for /health detail, /metrics
    # Key labels (the frontend's server) trusted to name the end user they call for, with
    # the OpenAI `user` field or the X-Scout-User header: the per-user limits' third key.
    end_user_keys: tuple[str, ...] = ()
    key_max_age_days: Seconds = 30.0      # one warning when a key gets older than this

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not re.match(r"^https?://[^/\s]+/?$", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return tuple(o.rstrip("/") for o in value)

    @field_validator("end_user_keys", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise ValueError("must be a list of API key labels")
        return value

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> AuthConfig:
        loading = context_of(info)
        signing = loading.from_env(self.signing_secret_env)
        if signing and len(signing) < 16:
            loading.problems.append(f"auth: {self.signing_secret_env} is too short to sign "
                                    "session ids and tokens (16+ characters)")
        if not signing:
            loading.warnings.append(
                f"auth: {self.signing_secret_env} is not set; session ids and WebSocket tokens "
                "are signed with a per-process key, so other gateway processes refuse them")
        if self.api_keys_file and not Path(self.api_keys_file).is_file():
            loading.problems.append(f"auth.api_keys_file: {self.api_keys_file} does not exist")
        self._found["api_keys"] = loading.secret(self.api_keys_env)
        if self.api_keys is None and not self.api_keys_file and not self.allow_anonymous:
            loading.problems.append(f"auth: no API keys: set {self.api_keys_env} "
                                    "(label:key,...) or auth.api_keys_file")
        self._found.update(signing_secret=Secret(signing) if signing else None,
                           staff_keys=loading.secret(self.staff_keys_env))
        return self

    api_keys = resolved("api_keys", "Frontend keys, label:key,... (a Secret).")
    signing_secret = resolved("signing_secret", "Signs session ids and WebSocket tokens.")
    staff_keys = resolved("staff_keys", "Staff tokens, label:token,... (a Secret).")


class HealthConfig(Section):
    interval_s: Seconds = 2.0
    jitter: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.2  # ± this share of the interval
    timeout_s: Seconds = 1.0         # one attempt per probe, never retried
    backoff_max_s: Seconds = 10.0    # a down target is probed less often, up to this
    rise: Count = 2                  # good probes in a row before a bad target is up again
    busy_waiting: Annotated[int, Strict(), Field(ge=0)] = 8  # vLLM queue above this → busy
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


def _limit(value: str) -> str:
    from limits import parse as parse_limit
    try:
        parse_limit(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a limit like '60/minute'") from None
    return value


class RateLimitConfig(Section):
    per_key: str = "600/minute"
    per_ip: str = "60/minute"
    streams_per_key: Count = 200
    streams_per_ip: Count = 8
    per_user: str = "30/minute"   # per end user named by a key in auth.end_user_keys
    streams_per_user: Count = 2

    _limits = field_validator("per_key", "per_ip", "per_user")(_limit)


class WebSocketConfig(Section):
    heartbeat_s: Seconds = 20.0           # ping interval; no pong within half of it closes
    max_in_flight: Count = 4              # chats in flight on one socket
    max_frame_bytes: Count = 64 * 1024
    messages_per_s: Seconds = 5.0
    burst: Count = 20
    drain_s: NonNegative = 20.0           # on SIGTERM, how long in-flight answers may finish


class ServerConfig(Section):
    host: str = "0.0.0.0"
    port: Annotated[int, Strict(), Field(ge=0, le=65535)] = 8080
    max_body_bytes: Count = 256 * 1024
    max_message_bytes: Count = 32 * 1024
    max_messages: Count = 200
    body_timeout_s: Seconds = 10.0  # the whole body must arrive within this (slow-loris)
    system_prompt: str = ""
    # Per chat, SSE or WebSocket: a client further behind than this loses the stream
    # (the answer still completes and can be resumed).
    max_buffered_bytes: Count = 256 * 1024
    # Peers whose X-Forwarded-For is believed (addresses or CIDRs): the edge nginx. From any
    # other peer the header is ignored and the peer's own address is the client's.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # Python's cycle collector runs its youngest pass after this many net allocations
    # (Python's own default is 700); what was built at startup is frozen out of its sight
    # either way. Why, and what a higher value costs: gateway.cli.tune_gc.
    gc_threshold: Count = 10_000
    # After SIGTERM the process keeps listening at least this long, /readyz answering 503
    # and new chats 503 with Retry-After, so a load balancer sees it leave before its
    # connections are refused; longer while answers in flight finish (websocket.drain_s).
    # A second SIGTERM skips what is left of it.
    drain_grace_s: NonNegative = 5.0

    @field_validator("system_prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value


# Settings that moved to the section that uses them: (old section, key) → (new section, key).
# The old name is read, with a warning, for one release.
MOVED = {("server", "passive_health_ttl_s"): ("health", "eject_ttl_s"),
         ("websocket", "max_buffered_bytes"): ("server", "max_buffered_bytes")}


class Settings(BaseModel):
    """The whole file. Each generative tier's section is added by the registry
    (`settings_model`); `tiers` maps a tier's name to its section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: ServerConfig = _from_file()
    cache: CacheConfig = _from_file()
    redis: RedisConfig = _from_file()
    sessions: SessionsConfig = _from_file()
    auth: AuthConfig = _from_file()
    ws: WebSocketConfig = _from_file(alias="websocket")
    health: HealthConfig = _from_file()
    rate_limits: RateLimitConfig = _from_file()
    deadlines: Deadlines = _from_file()   # every intent's, unless it sets its own
    intents: dict[str, IntentConfig]
    default_intent: str = "default"
    prices: dict[str, Price] = {}        # USD per 1M tokens, per model name
    privacy: PrivacyConfig = _from_file()
    hedging: HedgingKnobs = _from_file()
    inventory: InventoryConfig = _from_file()
    _warnings: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any, info: ValidationInfo) -> Any:
        """Moved names, intent names and deadlines, and the rules across sections, on the
        file as written: they are listed even when some field elsewhere is wrong."""
        if not isinstance(data, Mapping):
            return data
        loading = context_of(info)
        data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
        for (old, old_key), (new, new_key) in MOVED.items():
            before = data.get(old)
            if not isinstance(before, dict) or old_key not in before:
                continue
            value = before.pop(old_key)
            after = data.setdefault(new, {})
            if not isinstance(after, dict):
                continue
            if new_key in after:
                loading.problems.append(f"{old}.{old_key}: moved to {new}.{new_key}, which "
                                        "is also set; keep only that")
                continue
            loading.warnings.append(f"{old}.{old_key} is now {new}.{new_key}; the old name "
                                    "is read until the next release")
            after[new_key] = value
        from gateway.tiers import registry
        tiers = registry()
        base = data.get("deadlines") if isinstance(data.get("deadlines"), dict) else {}
        _deadline_rules("deadlines", base, loading.problems)
        intents = data.get("intents")
        if isinstance(intents, dict):
            for name, raw in list(intents.items()):
                if not isinstance(raw, Mapping):
                    continue
                own = raw.get("deadlines")
                raw = {**raw, "name": str(name)}
                if own is None or isinstance(own, Mapping):
                    raw["deadlines"] = {**base, **(own or {})}
                    if own:
                        _deadline_rules(f"intents.{name}.deadlines", raw["deadlines"],
                                        loading.problems)
                intents[name] = raw
                _intent_rules(str(name), raw, tiers.offsite(), loading.problems)
        default_intent = data.get("default_intent", "default")
        if isinstance(intents, dict) and default_intent not in intents:
            loading.problems.append(f"default_intent: {default_intent!r} is not among the "
                                    "intents")
        prices = data.get("prices") if isinstance(data.get("prices"), Mapping) else {}
        for spec in tiers.generative():
            assert spec.config is not None
            section = data.get(spec.name) if isinstance(data.get(spec.name), Mapping) else {}
            if section.get("enabled", spec.config.model_fields["enabled"].default) is False:
                users = sorted(str(n) for n, i in (intents or {}).items()
                               if isinstance(i, Mapping) and spec.name in (i.get("ladder") or ()))
                if users:
                    loading.warnings.append(f"tier {spec.name} is disabled and is skipped in "
                                            f"the ladders of {', '.join(users)}")
                continue
            model = section.get("model", spec.config.model_fields["model"].default)
            if isinstance(model, str) and model not in prices:
                loading.problems.append(f"{spec.name}.model: {model!r} has no entry under "
                                        "prices (on-prem may be 0)")
        return data

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    # Settings are frozen, and so is the registry a Settings model is built from: these are
    # worked out once per Settings, not on each of the several calls a turn makes.
    @cached_property
    def tiers(self) -> dict[str, TierConfig]:
        """Each generative tier's section, by tier name (enabled or not)."""
        from gateway.tiers import registry
        return {s.name: getattr(self, s.name) for s in registry().generative()}

    def tier_config(self, tier: str) -> TierConfig | None:
        return self.tiers.get(tier)

    def enabled_tiers(self) -> tuple[str, ...]:
        return self._enabled_tiers

    @cached_property
    def _enabled_tiers(self) -> tuple[str, ...]:
        from gateway.tiers import registry
        on = {**{name: cfg.enabled for name, cfg in self.tiers.items()},
              "inventory": self.inventory.enabled}
        return tuple(t for t in registry().names() if on.get(t, True))

    def tier_model(self, tier: str) -> str:
        """The model name a tier reports as having produced its text."""
        cfg = self.tiers.get(tier)
        return cfg.model if cfg is not None else f"scout-{tier}"


def settings_model() -> type[Settings]:
    """`Settings` with a section for each generative tier in the registry."""
    from gateway.tiers import registry
    return _settings_model(registry().version, registry().names())


@cache
def _settings_model(version: int, names: tuple[str, ...]) -> type[Settings]:
    from gateway.tiers import registry
    sections: dict[str, Any] = {}
    for spec in registry().generative():
        assert spec.config is not None
        sections[spec.name] = (spec.config, _from_file())
    return create_model("ScoutConfig", __base__=Settings, **sections)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the file may hold at `loc` (the mapping an unknown key was found in)."""
    node: Any = settings_model()
    for part in loc:
        node = _optional(node)
        if get_origin(node) is dict:      # `part` is a free name (an intent, a model)
            node = get_args(node)[-1]
        elif get_origin(node) in (list, tuple):
            node = get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, BaseModel):
            fld = next((f for n, f in node.model_fields.items() if (f.alias or n) == part),
                       None)
            node = fld.annotation if fld is not None else None
        else:
            return []
    node = _optional(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items() if n != "name"]
    return []


def _optional(node: Any) -> Any:
    """`X | None` as X."""
    args = [a for a in get_args(node) if a is not type(None)]
    return args[0] if get_origin(node) in (Union, UnionType) and len(args) == 1 else node


def _plain(err: Mapping[str, Any]) -> str:
    """One pydantic error in the words an operator reads."""
    loc = tuple(err["loc"])
    where, kind, value = _where(loc), err["type"], err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(loc[:-1])
        what = "unknown setting" if len(loc) > 1 else "unknown section"
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
        return f"{where}: {what} ({hint})"
    if kind in ("bool_type", "bool_parsing"):
        quoted = isinstance(value, str) and value.lower() in ("true", "false")
        return f"{where}: must be true or false{' (unquoted)' if quoted else ''}, got {value!r}"
    if kind in ("int_type", "float_type", "int_parsing", "float_parsing", "int_from_float"):
        whole = " whole" if kind in ("int_type", "int_from_float") and \
            isinstance(value, float) else ""
        return f"{where}: must be a{whole} number, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "greater than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[kind]
        bound = next(iter(err.get("ctx", {}).values()), "")
        return f"{where}: must be {words} {bound}, got {value!r}"
    if kind == "missing":
        return f"{where}: is required"
    if kind == "too_short":
        return f"{where}: must be a non-empty list"
    if kind in ("string_type",):
        return f"{where}: must be text, got {value!r}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where}: must be a mapping, got {type(value).__name__}"
    if kind in ("list_type", "tuple_type"):
        return f"{where}: must be a list, got {value!r}"
    if kind == "literal_error":
        choices = err.get("ctx", {}).get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{where}: must be one of {choices}, got {value!r}"
    if kind in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return f"{where}: {value!r} is not a date like 2026-11-01"
    if kind == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
        if msg.startswith("patterns: "):   # a nested list's problem, named where it is
            return f"{where}.{msg}"
        return f"{where}: {msg}"
    return f"{where}: {err['msg']}"


def settings_from_dict(data: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate Settings; raises ConfigError with every problem found."""
    loading = Loading(os.environ if env is None else env)
    if not isinstance(data, Mapping):
        raise ConfigError(["the configuration must be a YAML mapping"])
    try:
        settings = settings_model().model_validate(data, context=loading)
    except ValidationError as exc:
        problems = [_plain(e) for e in exc.errors()]
    else:
        problems = []
    problems = list(dict.fromkeys([*loading.problems, *problems]))
    if problems:
        raise ConfigError(sorted(problems, key=_order))
    settings._warnings = tuple(loading.warnings)
    return settings


def _order(problem: str) -> tuple[int, str]:
    """Problems in the order of the file's sections."""
    head = re.split(r"[.:\[ ]", problem, maxsplit=1)[0]
    names = list(settings_model().model_fields)
    aliases = [f.alias or n for n, f in settings_model().model_fields.items()]
    for i, (n, a) in enumerate(zip(names, aliases, strict=True)):
        if head in (n, a):
            return i, problem
    return len(names), problem


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
