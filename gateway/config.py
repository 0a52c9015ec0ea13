"""Settings: one YAML file plus secrets from the environment or files.

`load_settings` validates everything and raises `ConfigError` listing every
problem at once, so an operator fixes the file in one pass.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError

TIERS = ("onprem", "openai", "inventory", "cache", "static")
GENERATIVE_TIERS = ("onprem", "openai")
OFFSITE_TIERS = frozenset({"openai"})   # tiers outside the dealership: privacy rules apply
# Where an intent's turns may go: `allowed` off-site as written, `redacted` off-site with
# personal data replaced by placeholders, `never` on-site only (on-prem, cache, static).
OFFSITE_POLICIES = ("allowed", "redacted", "never")
PII_KINDS = ("email", "phone", "card", "ssn", "dl", "vin", "plate", "dob", "address",
             "bank_account", "routing", "income", "credit_score", "name")


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


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The three deadlines that guard one tier's stream, in seconds."""

    headers_s: float = 2.0
    first_token_s: float = 5.0
    gap_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Price:
    """USD per one million tokens."""

    input: float
    output: float


@dataclass(frozen=True)
class IntentConfig:
    name: str
    ladder: tuple[str, ...]
    deadlines: Deadlines
    static_reply: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    cacheable: bool = False
    cache_ttl_s: float = 3600.0
    private: bool = False
    offsite: str = ""     # one of OFFSITE_POLICIES; unset: never if private, else redacted
    ground: bool = False  # put the matching stock in the models' system prompt

    def __post_init__(self) -> None:
        if not self.offsite:
            object.__setattr__(self, "offsite", "never" if self.private else "redacted")


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    base_url: str  # serves /health, /v1/models, /metrics (nginx's /replicas/NAME, or direct)


@dataclass(frozen=True)
class OnpremConfig:
    enabled: bool = True
    # The GPU box's nginx (one URL); several URLs are balanced client-side
    # (least in flight), which the demo uses when no nginx runs.
    urls: tuple[str, ...] = ("http://127.0.0.1:8000",)
    model: str = "llama-3.1-70b-instruct"
    api_key: Secret | None = None
    api_key_file: str | None = None     # re-read on change and SIGHUP (rotation)
    api_key_rotated_at: float | None = None
    supports_tools: bool = False
    max_connections: int = 200
    replicas: tuple[Replica, ...] = ()
    path_health: str = "/health"   # answered by nginx itself: is the GPU box reachable?


@dataclass(frozen=True)
class OpenAIConfig:
    enabled: bool = True
    model: str = "gpt-4o-mini"
    api_key: Secret | None = None
    api_key_file: str | None = None
    api_key_rotated_at: float | None = None
    base_url: str | None = None
    supports_tools: bool = True
    timeout_s: float = 60.0
    propagate_trace: bool = False   # send traceparent to OpenAI too (tracing on)


@dataclass(frozen=True)
class CacheConfig:
    max_entries: int = 10_000
    # How long an answer is kept past its fresh TTL for the ladder's stale tier.
    stale_ttl_s: float = 86_400.0
    # How long identical questions wait for the one that went upstream.
    stampede_wait_s: float = 5.0


@dataclass(frozen=True)
class HedgingKnobs:
    floor_s: float = 0.3
    factor: float = 1.5
    budget: float = 0.05
    window_s: float = 300.0


@dataclass(frozen=True)
class InventoryConfig:
    enabled: bool = True
    dsn: Secret | None = None          # PostgreSQL (INVENTORY_DSN); None: SQLite
    sqlite_path: str = ""              # "" keeps it in memory, loaded from seed_csv at start
    seed_csv: str = ""                 # loaded when the store is empty ("" : none)
    max_results: int = 5
    max_age_h: float = 24.0
    link: str = "https://www.lakesidemotors.example/inventory/{stock_number}"
    ground_rows: int = 8
    synonyms: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class PrivacyConfig:
    # Personal data replaced before an off-site tier sees it, per kind (all on by default).
    redact: frozenset[str] = frozenset(PII_KINDS)


@dataclass(frozen=True)
class RedisConfig:
    url: Secret | None = None   # None: the in-process store (demo, single box)
    timeout_s: float = 0.05


@dataclass(frozen=True)
class SessionsConfig:
    ttl_s: float = 86_400.0
    max_turns: int = 20           # user+assistant pairs kept and sent upstream
    max_prompt_tokens: int = 3000  # oldest turns are dropped past this (estimated)
    answer_ttl_s: float = 3600.0  # finished answers kept for a client that reconnects


@dataclass(frozen=True)
class AuthConfig:
    api_keys: Secret | None = None      # "label:key,label:key" from the environment
    api_keys_file: str | None = None    # "label key" or "label sha256:<hex>" per line; reloaded
    # Signs session ids and WebSocket tokens; the same on every gateway process.
    signing_secret: Secret | None = None
    ws_token_ttl_s: float = 60.0
    allowed_origins: tuple[str, ...] = ()
    demo_tokens: bool = False           # /api/demo-token hands out WebSocket tokens (demo only)
    allow_anonymous: bool = False       # no API key needed at all (never on the internet)
    staff_keys: Secret | None = None    # "label:token,..." for /health detail, /metrics, dashboard
    # Key labels (the frontend's server) trusted to name the end user they call for, with
    # the OpenAI `user` field or the X-Scout-User header: the per-user limits' third key.
    end_user_keys: tuple[str, ...] = ()
    key_max_age_days: float = 30.0      # one warning when a key gets older than this


@dataclass(frozen=True)
class HealthConfig:
    interval_s: float = 2.0
    jitter: float = 0.2            # ± this fraction of the interval
    timeout_s: float = 1.0         # one attempt per probe, never retried
    backoff_max_s: float = 10.0    # a down target is probed less often, up to this
    rise: int = 2                  # good probes in a row before a bad target is up again
    busy_waiting: int = 8          # vllm:num_requests_waiting above this → busy
    eject_after: int = 3           # live-traffic failures in a row that eject a tier
    eject_ttl_s: float = 10.0      # the first ejection's length (longer each time after)
    webhook_url: Secret | None = None   # Slack-compatible; from the environment
    fallback_window_s: float = 900.0
    fallback_threshold: float = 0.5     # share of answers not from on-prem that alerts
    fallback_min_requests: int = 3


@dataclass(frozen=True)
class RateLimitConfig:
    per_key: str = "600/minute"
    per_ip: str = "60/minute"
    streams_per_key: int = 200
    streams_per_ip: int = 8
    per_user: str = "30/minute"   # per end user named by a key in auth.end_user_keys
    streams_per_user: int = 2


@dataclass(frozen=True)
class WebSocketConfig:
    heartbeat_s: float = 20.0           # ping interval; no pong within half of it closes
    max_in_flight: int = 4              # chats in flight on one socket
    max_frame_bytes: int = 64 * 1024
    messages_per_s: float = 5.0
    burst: int = 20
    drain_s: float = 20.0               # on SIGTERM, how long in-flight answers may finish


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 256 * 1024
    max_message_bytes: int = 32 * 1024
    max_messages: int = 200
    body_timeout_s: float = 10.0  # the whole body must arrive within this (slow-loris)
    system_prompt: str = ""
    # Per chat, SSE or WebSocket: a client further behind than this loses the stream
    # (the answer still completes and can be resumed).
    max_buffered_bytes: int = 256 * 1024
    # Peers whose X-Forwarded-For is believed (addresses or CIDRs): the edge nginx. From any
    # other peer the header is ignored and the peer's own address is the client's.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Settings:
    server: ServerConfig
    onprem: OnpremConfig
    openai: OpenAIConfig
    cache: CacheConfig
    redis: RedisConfig
    sessions: SessionsConfig
    auth: AuthConfig
    ws: WebSocketConfig
    health: HealthConfig
    rate_limits: RateLimitConfig
    intents: dict[str, IntentConfig]
    prices: dict[str, Price]
    default_intent: str = "default"
    warnings: tuple[str, ...] = field(default=())
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    hedging: HedgingKnobs = field(default_factory=HedgingKnobs)
    inventory: InventoryConfig = field(default_factory=InventoryConfig)

    def enabled_tiers(self) -> tuple[str, ...]:
        on = {"onprem": self.onprem.enabled, "openai": self.openai.enabled,
              "inventory": self.inventory.enabled}
        return tuple(t for t in TIERS if on.get(t, True))

    def tier_model(self, tier: str) -> str:
        """The model name a tier reports as having produced its text."""
        if tier == "onprem":
            return self.onprem.model
        if tier == "openai":
            return self.openai.model
        return f"scout-{tier}"


class _Read(dict[str, Any]):
    """A mapping from the file that remembers which keys the code looked up, so a key it
    never asked for (a typo: `intervall_s`, `ratelimits`) is reported, not ignored."""

    def __init__(self, where: str, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.where = where
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def unknown(self) -> list[str]:
        """One line per key nobody asked for, with the likeliest meant one."""
        out = []
        for key in sorted(set(map(str, self)) - self.asked):
            where = f"{self.where}.{key}" if self.where else key
            what = "unknown setting" if self.where else "unknown section"
            close = difflib.get_close_matches(key, self.asked, n=1, cutoff=0.6)
            hint = (f"did you mean {close[0]!r}?" if close
                    else f"known: {', '.join(sorted(self.asked))}")
            out.append(f"{where}: {what} ({hint})")
        return out


class _Problems:
    """Collects every problem so they are reported together."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._read: dict[str, _Read] = {}

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def read(self, where: str, data: Mapping[str, Any]) -> _Read:
        """Track a mapping of settings; `finish` reports the keys in it nobody read."""
        if where not in self._read:
            self._read[where] = _Read(where, data)
        return self._read[where]

    def finish(self) -> None:
        for tracked in self._read.values():
            self.items.extend(tracked.unknown())


def _section(data: Mapping[str, Any], key: str, p: _Problems, *,
             names: bool = False) -> Mapping[str, Any]:
    """A section of settings; `names` for one keyed by free names (intents, prices)."""
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        p.add(f"{key}: must be a mapping, got {type(value).__name__}")
        return {}
    return value if names else p.read(key, value)


def _moved(data: Mapping[str, Any], old: str, new: str, old_key: str, new_key: str,
           warnings: list[str], p: _Problems) -> Mapping[str, Any]:
    """The `new` section, taking a setting still written under its old place (`old.old_key`)
    for one release, with a warning that says where it lives now."""
    section = _section(data, new, p)
    before = _section(data, old, p)
    if old_key not in before:
        return section
    if new_key in section:
        p.add(f"{old}.{old_key}: moved to {new}.{new_key}, which is also set; keep only that")
        return section
    warnings.append(f"{old}.{old_key} is now {new}.{new_key}; the old name is read until "
                    "the next release")
    return {**section, new_key: before.get(old_key)}


def _flag(sec: Mapping[str, Any], key: str, default: bool, where: str, p: _Problems) -> bool:
    """A true/false setting. YAML's own booleans only: a quoted "false" is a string, and
    reading it as truthy would turn a tier on."""
    value = sec.get(key, default)
    if not isinstance(value, bool):
        p.add(f"{where}.{key}: must be true or false (unquoted), got {value!r}")
        return default
    return value


def _num(sec: Mapping[str, Any], key: str, default: float, where: str, p: _Problems,
         *, minimum: float = 0.0, integer: bool = False) -> Any:
    value = sec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        p.add(f"{where}.{key}: must be a number, got {value!r}")
        return default
    if value <= minimum:
        p.add(f"{where}.{key}: must be greater than {minimum:g}, got {value!r}")
        return default
    return int(value) if integer else float(value)


def _from_env(env: Mapping[str, str], name: str, p: _Problems) -> str:
    """A secret from the environment: `NAME`, or the file that `NAME_FILE` names (the
    convention of Docker's official images, so compose `secrets:` work without putting the
    value in the container's environment, where `docker inspect` shows it)."""
    value = env.get(name, "").strip()
    if value or not env.get(f"{name}_FILE"):
        return value
    path = env[f"{name}_FILE"]
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        p.add(f"{name}_FILE: cannot read {path}: {exc.strerror}")
        return ""


def _secret(sec: Mapping[str, Any], where: str, env: Mapping[str, str], required: bool,
            p: _Problems) -> Secret | None:
    """Resolve `api_key_env` / `api_key_file`; a key written inline is refused."""
    if "api_key" in sec:
        p.add(f"{where}.api_key: secrets never go in the file; use api_key_env or api_key_file")
    env_name = sec.get("api_key_env")
    file_name = sec.get("api_key_file")
    if env_name:
        value = _from_env(env, str(env_name), p)
        if value:
            return Secret(value)
    if file_name:
        try:
            value = Path(str(file_name)).read_text().strip()
        except OSError as exc:
            p.add(f"{where}.api_key_file: cannot read {file_name}: {exc.strerror}")
            return None
        if value:
            return Secret(value)
    if required and (env_name or file_name):
        source = f"environment variable {env_name}" if env_name else f"file {file_name}"
        p.add(f"{where}: enabled but its API key is missing: set {source}")
    return None


def _key_file(sec: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The key file to watch for rotation: only when the key really came from it."""
    name = str(sec.get("api_key_env") or "")
    if not sec.get("api_key_file") or (name and env.get(name, "").strip()):
        return None
    return str(sec["api_key_file"])


def _rotated_at(sec: Mapping[str, Any], where: str, p: _Problems) -> float | None:
    """`api_key_rotated_at: 2026-11-01` (YAML reads it as a date) as a UNIX time."""
    import datetime
    raw = sec.get("api_key_rotated_at")
    if raw is None:
        return None
    try:
        day = raw if isinstance(raw, datetime.date) else datetime.date.fromisoformat(str(raw))
    except ValueError:
        p.add(f"{where}.api_key_rotated_at: {raw!r} is not a date like 2026-11-01")
        return None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


def _deadlines(raw: Any, where: str, base: Deadlines, p: _Problems) -> Deadlines:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        p.add(f"{where}: must be a mapping of headers_s, first_token_s, gap_s")
        return base
    raw = p.read(where, raw)
    d = Deadlines(
        headers_s=_num(raw, "headers_s", base.headers_s, where, p),
        first_token_s=_num(raw, "first_token_s", base.first_token_s, where, p),
        gap_s=_num(raw, "gap_s", base.gap_s, where, p),
    )
    if d.headers_s > d.first_token_s:
        p.add(f"{where}: headers_s ({d.headers_s:g}) cannot be longer than first_token_s "
              f"({d.first_token_s:g}): no token can arrive before the headers")
    for key in ("headers_s", "first_token_s", "gap_s"):
        if getattr(d, key) > 600:
            p.add(f"{where}.{key}: {getattr(d, key):g} s is longer than any client waits (max 600)")
    return d


def _intent(name: str, raw: Any, defaults: Deadlines, p: _Problems) -> IntentConfig | None:
    where = f"intents.{name}"
    if not isinstance(raw, Mapping):
        p.add(f"{where}: must be a mapping")
        return None
    raw = p.read(where, raw)
    ladder_raw = raw.get("ladder")
    if not isinstance(ladder_raw, list) or not ladder_raw:
        p.add(f"{where}.ladder: must be a non-empty list of tiers ({', '.join(TIERS)})")
        ladder_raw = ["static"]
    ladder = tuple(str(t) for t in ladder_raw)
    for tier in ladder:
        if tier not in TIERS:
            p.add(f"{where}.ladder: unknown tier {tier!r} (known: {', '.join(TIERS)})")
    if len(set(ladder)) != len(ladder):
        p.add(f"{where}.ladder: names a tier twice")
    private = _flag(raw, "private", True, where, p) if "private" in raw else False
    # (a malformed value fails closed, as private, while the problem is reported)
    offsite = raw.get("offsite", "never" if private else "redacted")
    if offsite not in OFFSITE_POLICIES:
        p.add(f"{where}.offsite: must be one of {', '.join(OFFSITE_POLICIES)}, got {offsite!r}")
        offsite = "never"
    if private and offsite != "never":
        p.add(f"{where}: is private, so offsite must be never (got {offsite})")
    if offsite == "never" and OFFSITE_TIERS & set(ladder):
        why = "is private" if private else "has offsite: never"
        p.add(f"{where}: {why}, so its ladder must not contain "
              f"{', '.join(sorted(OFFSITE_TIERS & set(ladder)))}")
    cacheable = _flag(raw, "cacheable", False, where, p)
    if private and cacheable:
        p.add(f"{where}: is private, so it cannot be cacheable")
    static_reply = raw.get("static_reply")
    if not isinstance(static_reply, str) or not static_reply.strip():
        p.add(f"{where}.static_reply: every intent needs a static reply (the last resort)")
        static_reply = ""
    match = raw.get("match") or {}
    if not isinstance(match, Mapping):
        p.add(f"{where}.match: must be a mapping of keywords and patterns")
        match = {}
    match = p.read(f"{where}.match", match)
    keywords = tuple(str(k).lower() for k in (match.get("keywords") or []))
    patterns: list[re.Pattern[str]] = []
    for pat in match.get("patterns") or []:
        try:
            patterns.append(re.compile(str(pat), re.IGNORECASE))
        except re.error as exc:
            p.add(f"{where}.match.patterns: {pat!r} is not a valid regex: {exc}")
    return IntentConfig(
        name=name,
        ladder=ladder,
        deadlines=_deadlines(raw.get("deadlines"), f"{where}.deadlines", defaults, p),
        static_reply=static_reply,
        keywords=keywords,
        patterns=tuple(patterns),
        cacheable=cacheable,
        cache_ttl_s=_num(raw, "cache_ttl_s", 3600.0, where, p),
        private=private,
        offsite=offsite,
        ground=raw.get("ground", False) is True,
    )


def _urls(raw: Any, p: _Problems) -> tuple[str, ...]:
    urls = [raw] if isinstance(raw, str) else list(raw or [])
    out = []
    for u in urls:
        u = str(u).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", u):
            p.add(f"onprem.url: {u!r} is not an http(s) URL")
        out.append(u)
    if not out:
        p.add("onprem.url: the GPU box's URL is required when onprem is enabled")
    return tuple(out)


def _replicas(raw: Any, urls: tuple[str, ...], p: _Problems) -> tuple[Replica, ...]:
    """Names behind nginx (/replicas/NAME), or {name, url} for replicas reached directly."""
    out: list[Replica] = []
    for i, item in enumerate(raw or []):
        if isinstance(item, str) and re.match(r"^[A-Za-z0-9_.-]+$", item) and urls:
            out.append(Replica(item, f"{urls[0]}/replicas/{item}"))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str) \
                and re.match(r"^https?://", str(item.get("url", ""))):
            out.append(Replica(item["name"], str(item["url"]).rstrip("/")))
        else:
            p.add(f"onprem.replicas[{i}]: a name (behind nginx) or {{name, url}}, got {item!r}")
    if len({r.name for r in out}) != len(out):
        p.add("onprem.replicas: names must be unique")
    return tuple(out)


def _networks(raw: Any, where: str, p: _Problems) -> tuple[str, ...]:
    """Addresses or CIDRs (`10.0.0.5`, `172.18.0.0/16`, `::1`), each checked."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        p.add(f"{where}: must be a list of addresses or CIDRs like 172.18.0.0/16")
        return ()
    out = []
    for item in raw:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            p.add(f"{where}: {item!r} is not an IP address or CIDR")
            continue
        out.append(str(item))
    return tuple(out)


def _labels(raw: Any, where: str, p: _Problems) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        p.add(f"{where}: must be a list of API key labels")
        return ()
    return tuple(raw)


def settings_from_dict(data: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate Settings; raises ConfigError with every problem found."""
    env = os.environ if env is None else env
    p = _Problems()
    if not isinstance(data, Mapping):
        raise ConfigError(["the configuration must be a YAML mapping"])
    data = p.read("", data)
    warnings: list[str] = []

    s = _section(data, "server", p)
    server = ServerConfig(
        host=str(s.get("host", "0.0.0.0")),
        port=int(_num(s, "port", 8080, "server", p, minimum=-1, integer=True)),
        max_body_bytes=_num(s, "max_body_bytes", 256 * 1024, "server", p, integer=True),
        max_message_bytes=_num(s, "max_message_bytes", 32 * 1024, "server", p, integer=True),
        max_messages=_num(s, "max_messages", 200, "server", p, integer=True),
        body_timeout_s=_num(s, "body_timeout_s", 10.0, "server", p),
        system_prompt=str(s.get("system_prompt") or ""),
        max_buffered_bytes=_num(_moved(data, "websocket", "server", "max_buffered_bytes",
                                       "max_buffered_bytes", warnings, p),
                                "max_buffered_bytes", 256 * 1024, "server", p, integer=True),
        trusted_proxies=_networks(s.get("trusted_proxies", ["127.0.0.1", "::1"]),
                                  "server.trusted_proxies", p),
    )

    o = _section(data, "onprem", p)
    onprem_enabled = _flag(o, "enabled", True, "onprem", p)
    url_raw = o.get("url")
    urls = _urls(url_raw, p) if onprem_enabled else ()
    onprem = OnpremConfig(
        enabled=onprem_enabled,
        urls=urls,
        replicas=_replicas(o.get("replicas"), urls, p),
        path_health=str(o.get("path_health", "/health")),
        model=str(o.get("model", "llama-3.1-70b-instruct")),
        api_key=_secret(o, "onprem", env, onprem_enabled, p),
        api_key_file=_key_file(o, env),
        api_key_rotated_at=_rotated_at(o, "onprem", p),
        supports_tools=_flag(o, "supports_tools", False, "onprem", p),
        max_connections=_num(o, "max_connections", 200, "onprem", p, integer=True),
    )

    a = _section(data, "openai", p)
    openai_enabled = _flag(a, "enabled", True, "openai", p)
    openai = OpenAIConfig(
        enabled=openai_enabled,
        model=str(a.get("model", "gpt-4o-mini")),
        api_key=_secret(a, "openai", env, openai_enabled, p),
        api_key_file=_key_file(a, env),
        api_key_rotated_at=_rotated_at(a, "openai", p),
        base_url=(str(env.get("OPENAI_BASE_URL") or a.get("base_url") or "") or None),
        supports_tools=_flag(a, "supports_tools", True, "openai", p),
        timeout_s=_num(a, "timeout_s", 60.0, "openai", p),
        propagate_trace=_flag(a, "propagate_trace", False, "openai", p),
    )
    if openai_enabled and not (a.get("api_key_env") or a.get("api_key_file")):
        p.add("openai: enabled but names no api_key_env or api_key_file")

    c = _section(data, "cache", p)
    cache = CacheConfig(
        max_entries=_num(c, "max_entries", 10_000, "cache", p, integer=True),
        stale_ttl_s=_num(c, "stale_ttl_s", 86_400.0, "cache", p, minimum=-1),
        stampede_wait_s=_num(c, "stampede_wait_s", 5.0, "cache", p),
    )

    r = _section(data, "redis", p)
    if "url" in r:
        p.add("redis.url: a Redis URL may hold a password; name it with url_env instead")
    url_env = str(r.get("url_env", "REDIS_URL"))
    redis_url = _from_env(env, url_env, p)
    if redis_url and not re.match(r"^(redis|rediss|unix)://", redis_url):
        p.add(f"redis: {url_env} must be a redis://, rediss:// or unix:// URL")
    redis_cfg = RedisConfig(url=Secret(redis_url) if redis_url else None,
                            timeout_s=_num(r, "timeout_ms", 50, "redis", p) / 1000)

    se = _section(data, "sessions", p)
    sessions = SessionsConfig(
        ttl_s=_num(se, "ttl_s", 86_400.0, "sessions", p),
        max_turns=_num(se, "max_turns", 20, "sessions", p, integer=True),
        max_prompt_tokens=_num(se, "max_prompt_tokens", 3000, "sessions", p, integer=True),
        answer_ttl_s=_num(se, "answer_ttl_s", 3600.0, "sessions", p),
    )

    au = _section(data, "auth", p)
    secret_env = str(au.get("signing_secret_env", "SCOUT_SIGNING_SECRET"))
    signing = _from_env(env, secret_env, p)
    if signing and len(signing) < 16:
        p.add(f"auth: {secret_env} is too short to sign session ids and tokens (16+ characters)")
    if not signing:
        warnings.append(f"auth: {secret_env} is not set; session ids and WebSocket tokens are "
                        "signed with a per-process key, so other gateway processes refuse them")
    keys_env = str(au.get("api_keys_env", "SCOUT_API_KEYS"))
    keys_file = au.get("api_keys_file")
    if keys_file and not Path(str(keys_file)).is_file():
        p.add(f"auth.api_keys_file: {keys_file} does not exist")
    api_keys = _from_env(env, keys_env, p)
    allow_anonymous = _flag(au, "allow_anonymous", False, "auth", p)
    if not api_keys and not keys_file and not allow_anonymous:
        p.add(f"auth: no API keys: set {keys_env} (label:key,...) or auth.api_keys_file")
    origins = au.get("allowed_origins") or []
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        p.add("auth.allowed_origins: must be a list of origins like https://app.example.com")
        origins = []
    for origin in origins:
        if not re.match(r"^https?://[^/\s]+$", origin):
            p.add(f"auth.allowed_origins: {origin!r} is not an origin (scheme://host[:port])")
    staff = _from_env(env, str(au.get("staff_keys_env", "SCOUT_STAFF_KEYS")), p)
    auth = AuthConfig(
        api_keys=Secret(api_keys) if api_keys else None,
        api_keys_file=str(keys_file) if keys_file else None,
        signing_secret=Secret(signing) if signing else None,
        ws_token_ttl_s=_num(au, "ws_token_ttl_s", 60.0, "auth", p),
        allowed_origins=tuple(o.rstrip("/") for o in origins),
        demo_tokens=_flag(au, "demo_tokens", False, "auth", p),
        allow_anonymous=allow_anonymous,
        staff_keys=Secret(staff) if staff else None,
        end_user_keys=_labels(au.get("end_user_keys"), "auth.end_user_keys", p),
        key_max_age_days=_num(au, "key_max_age_days", 30.0, "auth", p),
    )

    h = _section(data, "health", p)
    hook_env = str(h.get("webhook_url_env", "SCOUT_ALERT_WEBHOOK"))
    hook = _from_env(env, hook_env, p)
    if hook and not re.match(r"^https?://", hook):
        p.add(f"health: {hook_env} must be an http(s) URL")
    health = HealthConfig(
        interval_s=_num(h, "interval_s", 2.0, "health", p),
        jitter=_num(h, "jitter", 0.2, "health", p, minimum=-1e-9),
        timeout_s=_num(h, "timeout_s", 1.0, "health", p),
        backoff_max_s=_num(h, "backoff_max_s", 10.0, "health", p),
        rise=_num(h, "rise", 2, "health", p, integer=True),
        busy_waiting=_num(h, "busy_waiting", 8, "health", p, integer=True, minimum=-1),
        eject_after=_num(h, "eject_after", 3, "health", p, integer=True),
        eject_ttl_s=_num(_moved(data, "server", "health", "passive_health_ttl_s",
                                "eject_ttl_s", warnings, p), "eject_ttl_s", 10.0, "health", p),
        webhook_url=Secret(hook) if hook else None,
        fallback_window_s=_num(h, "fallback_window_s", 900.0, "health", p),
        fallback_threshold=_num(h, "fallback_threshold", 0.5, "health", p),
        fallback_min_requests=_num(h, "fallback_min_requests", 3, "health", p, integer=True),
    )
    if health.timeout_s >= health.interval_s:
        p.add(f"health.timeout_s ({health.timeout_s:g}) must be shorter than interval_s "
              f"({health.interval_s:g})")
    if health.jitter >= 1:
        p.add("health.jitter is a fraction of the interval and must be below 1")

    rl = _section(data, "rate_limits", p)
    rate_limits = RateLimitConfig(
        per_key=str(rl.get("per_key", "600/minute")), per_ip=str(rl.get("per_ip", "60/minute")),
        streams_per_key=_num(rl, "streams_per_key", 200, "rate_limits", p, integer=True),
        streams_per_ip=_num(rl, "streams_per_ip", 8, "rate_limits", p, integer=True),
        per_user=str(rl.get("per_user", "30/minute")),
        streams_per_user=_num(rl, "streams_per_user", 2, "rate_limits", p, integer=True))
    from limits import parse as parse_limit
    for name in ("per_key", "per_ip", "per_user"):
        try:
            parse_limit(getattr(rate_limits, name))
        except ValueError:
            p.add(f"rate_limits.{name}: {getattr(rate_limits, name)!r} is not a limit like "
                  "'60/minute'")

    w = _section(data, "websocket", p)
    ws = WebSocketConfig(
        heartbeat_s=_num(w, "heartbeat_s", 20.0, "websocket", p),
        max_in_flight=_num(w, "max_in_flight", 4, "websocket", p, integer=True),
        max_frame_bytes=_num(w, "max_frame_bytes", 64 * 1024, "websocket", p, integer=True),
        messages_per_s=_num(w, "messages_per_s", 5.0, "websocket", p),
        burst=_num(w, "burst", 20, "websocket", p, integer=True),
        drain_s=_num(w, "drain_s", 20.0, "websocket", p, minimum=-1),
    )

    prices: dict[str, Price] = {}
    for model, raw in _section(data, "prices", p, names=True).items():
        if not isinstance(raw, Mapping):
            p.add(f"prices.{model}: must be a mapping of input and output USD per 1M tokens")
            continue
        raw = p.read(f"prices.{model}", raw)
        prices[str(model)] = Price(
            input=_num(raw, "input", 0.0, f"prices.{model}", p, minimum=-1e-12),
            output=_num(raw, "output", 0.0, f"prices.{model}", p, minimum=-1e-12),
        )
    for enabled, model, where in ((onprem_enabled, onprem.model, "onprem"),
                                  (openai_enabled, openai.model, "openai")):
        if enabled and model not in prices:
            p.add(f"{where}.model: {model!r} has no entry under prices (on-prem may be 0)")

    defaults = _deadlines(data.get("deadlines"), "deadlines", Deadlines(), p)
    intents: dict[str, IntentConfig] = {}
    for name, raw in _section(data, "intents", p, names=True).items():
        intent = _intent(str(name), raw, defaults, p)
        if intent:
            intents[intent.name] = intent
    default_intent = str(data.get("default_intent", "default"))
    if default_intent not in intents:
        p.add(f"default_intent: {default_intent!r} is not among the intents")
    for intent in intents.values():
        for tier, enabled in (("onprem", onprem_enabled), ("openai", openai_enabled)):
            if tier in intent.ladder and not enabled:
                warnings.append(f"intent {intent.name}: tier {tier} is disabled and is skipped")

    iv = _section(data, "inventory", p)
    dsn_env = str(iv.get("dsn_env", "INVENTORY_DSN"))
    dsn = _from_env(env, dsn_env, p)
    if dsn and not re.match(r"^postgres(ql)?://", dsn):
        p.add(f"inventory: {dsn_env} must be a postgresql:// URL")
    seed = iv.get("seed_csv", "builtin")
    seed_path = str(Path(__file__).parent / "data" / "inventory.csv") if seed == "builtin" \
        else str(seed or "")
    if seed_path and not Path(seed_path).is_file():
        p.add(f"inventory.seed_csv: {seed_path} does not exist")
    raw_syn = iv.get("synonyms") or {}
    synonyms: list[tuple[str, str, str]] = []
    fields = {"make": "makes", "model": "models", "body_style": "body_styles", "fuel": "fuels"}
    if not isinstance(raw_syn, Mapping):
        p.add("inventory.synonyms: must map a phrase to {make|model|body_style|fuel: value}")
        raw_syn = {}
    for phrase, target in raw_syn.items():
        if not isinstance(target, Mapping) or len(target) != 1 or \
                next(iter(target)) not in fields:
            p.add(f"inventory.synonyms.{phrase}: must be one of {', '.join(fields)}: value")
            continue
        key, value = next(iter(target.items()))
        synonyms.append((str(phrase).lower(), fields[key], str(value)))
    link = str(iv.get("link", InventoryConfig.link))
    if "{stock_number}" not in link:
        p.add("inventory.link: must contain {stock_number}")
    inventory = InventoryConfig(
        enabled=_flag(iv, "enabled", True, "inventory", p), dsn=Secret(dsn) if dsn else None,
        sqlite_path=str(iv.get("sqlite_path") or ""), seed_csv=seed_path,
        max_results=_num(iv, "max_results", 5, "inventory", p, integer=True),
        max_age_h=_num(iv, "max_age_h", 24.0, "inventory", p),
        link=link, ground_rows=_num(iv, "ground_rows", 8, "inventory", p, integer=True),
        synonyms=tuple(synonyms))

    hd = _section(data, "hedging", p)
    hedging = HedgingKnobs(
        floor_s=_num(hd, "floor_s", 0.3, "hedging", p),
        factor=_num(hd, "factor", 1.5, "hedging", p),
        budget=_num(hd, "budget", 0.05, "hedging", p, minimum=-1e-12),
        window_s=_num(hd, "window_s", 300.0, "hedging", p))
    if hedging.budget > 1:
        p.add(f"hedging.budget is a share of requests (0 to 1), got {hedging.budget:g}")
    if hedging.factor < 1:
        p.add(f"hedging.factor below 1 hedges before the tier's own p95 ({hedging.factor:g})")

    pv = _section(data, "privacy", p)
    redact_raw = pv.get("redact") or {}
    if not isinstance(redact_raw, Mapping):
        p.add("privacy.redact: must be a mapping of kind: true/false")
        redact_raw = {}
    for kind, on in redact_raw.items():
        if kind not in PII_KINDS:
            p.add(f"privacy.redact.{kind}: unknown kind (known: {', '.join(PII_KINDS)})")
        elif not isinstance(on, bool):
            p.add(f"privacy.redact.{kind}: must be true or false, got {on!r}")
    privacy = PrivacyConfig(redact=frozenset(
        k for k in PII_KINDS if redact_raw.get(k, True) is not False))

    p.finish()
    if p.items:
        raise ConfigError(p.items)
    return Settings(privacy=privacy, hedging=hedging, inventory=inventory, server=server,
                    onprem=onprem,
                    openai=openai, cache=cache, redis=redis_cfg,
                    sessions=sessions, auth=auth, ws=ws, health=health,
                    rate_limits=rate_limits, intents=intents,
                    prices=prices, default_intent=default_intent, warnings=tuple(warnings))


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
