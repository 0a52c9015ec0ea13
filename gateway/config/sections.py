"""The file's sections besides the intents and the tiers': cache, hedging, inventory,
privacy, Redis, sessions, auth, health, rate limits, WebSocket and server. Each default is
written once, on its field; secrets are read from the environment while validating."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, StrictBool, ValidationInfo, field_validator, model_validator

from gateway.config.base import (
    Count,
    Flag,
    NonNegative,
    Seconds,
    Secret,
    Section,
    context_of,
    refused_inline,
    resolved,
)
from gateway.security.pii_kinds import PII_KEYS as PII_KINDS


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
    min_hedges: Count = 2      # per window, whatever the share
    min_samples: Count = 20    # answers seen before a tier's own tail is trusted


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
    # The stock's version (whether grounding lookups still hold) is read again after this
    # long (0: every turn).
    ground_reuse_s: NonNegative = 2.0
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
            return str(Path(__file__).parent.parent / "data" / "inventory.csv")
        return self.seed

    @property
    def synonyms(self) -> tuple[tuple[str, str, str], ...]:
        return tuple((phrase.lower(), _SYNONYM_FIELDS[k], v)
                     for phrase, target in self.phrases.items() for k, v in target.items())


class PrivacyModelConfig(Section):
    """The similarity model that reads each user turn after the keyword rules
    (gateway/language/semantic.py)."""

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
    business_phones: list[str] = Field(default=[])

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
        return refused_inline(data, "url", info, "redis.url: a Redis URL may hold a password; "
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
    # either way. Why, and what a higher value costs: gateway.server.tune_gc.
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
