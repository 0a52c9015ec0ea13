"""The tier registry: one `TierSpec` per tier, the only place that knows the tiers.

Each tier's module declares its own spec (`TIER`) next to its provider: its name, whether
it generates text (hedged, priced, its tokens counted), whether it is off-site (privacy
applies: `OffsiteGuard` wraps its provider by construction), its config section, how to
build its provider, what the health monitor probes, what `doctor` says when it fails, and
how the dashboard draws it. Config, routing, health, doctor, metrics, ops and the dashboard
read the registry; none of them names a tier.

Adding a tier is one module with a `TIER` spec, its name in `TIER_MODULES`, and its section
in `scout.yaml` (docs/design.md, "Adding a tier").
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import aiohttp

    from gateway.cache.store import ResponseCache
    from gateway.config.base import HealthConfig, TierConfig
    from gateway.config.settings import Settings
    from gateway.health.probes import Verdict
    from gateway.providers.base import Provider
    from gateway.security.upstream_keys import KeySource
    from gateway.state.kv import KV

# In ladder-display order: the GPU box first, the last resort last.
TIER_MODULES = (
    "gateway.providers.onprem",
    "gateway.providers.openai_tier",
    "gateway.providers.anthropic_tier",
    "gateway.inventory.tier",
    "gateway.providers.cache_tier",
    "gateway.providers.static",
)

# One probe: the shared session, the tier's key now, the health settings.
Probe = Callable[["aiohttp.ClientSession", "str | None", "HealthConfig"], Awaitable["Verdict"]]


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One thing the health monitor probes for a tier (a replica, the path, an API)."""

    name: str     # "onprem.replica-1", "openai"
    kind: str     # "path" (is the box reachable?), "replica", "api"
    probe: Probe


@dataclass(frozen=True, slots=True)
class Targets:
    """What the monitor watches for a tier. `routes` maps each URL chats are sent to onto
    the target that stands for it, so live-traffic failures eject that URL on its own."""

    probes: tuple[ProbeTarget, ...] = ()
    routes: Mapping[str, str] = field(default_factory=dict)


class TargetHealth(Protocol):
    """What a provider with several targets asks of, and tells, the health monitor about
    each URL it sends to."""

    def usable(self, url: str) -> bool: ...
    def why_not(self, url: str) -> str: ...
    def waiting(self, url: str) -> float: ...
    def cache_usage(self, url: str) -> float | None: ...
    def observe_target_failure(self, url: str, reason: str) -> None: ...
    def observe_target_success(self, url: str) -> None: ...
    # A turn sent to the URL, and its end however it ended: a probe that times out while
    # the replica answers one is read as busy (gateway.health.targets, TierBook._held).
    def turn_started(self, url: str) -> None: ...
    def turn_ended(self, url: str) -> None: ...
    def turn_moved(self, url: str) -> None: ...   # part of the answer arrived


@dataclass
class TierContext:
    """What a provider may be built from: the app's shared parts."""

    settings: Settings
    session: aiohttp.ClientSession    # the pooled upstream session (traced)
    keys: KeySource | None = None     # this tier's key, rotating
    health: TargetHealth | None = None   # the monitor (per-target outcomes)
    trace_configs: list[aiohttp.TraceConfig] = field(default_factory=list)
    cache: ResponseCache | None = None   # the app's answer cache (the cache tier reads it)
    store: KV | None = None   # the shared state (Redis, or this process's own)


def _no_targets(cfg: TierConfig) -> Targets:
    return Targets()


@dataclass(frozen=True)
class TierSpec:
    name: str
    label: str                 # for people: dashboard, doctor
    color: str = "#8b949e"     # the dashboard's series colour
    generative: bool = False   # calls a language model: hedged, priced, tokens counted
    offsite: bool = False      # outside the dealership: privacy rules apply
    primary: bool = False      # the tier the others are fallbacks for (fallback rate)
    last_resort: bool = False  # always available, always last in every ladder
    continues: bool = True     # can continue an answer another tier started (resume)
    config: type[TierConfig] | None = None    # its section of scout.yaml (generative)
    provider: Callable[[TierContext], Provider] | None = None
    # Or an async lifecycle, for a tier that opens what it owns (a database): the provider
    # it returns closes that in `close()`.
    open: Callable[[TierContext], Awaitable[Provider]] | None = None
    targets: Callable[[TierConfig], Targets] = _no_targets
    hints: Mapping[str, str] = field(default_factory=dict)  # doctor: failure kind → advice
    gen_ai_system: str = ""    # OpenTelemetry's gen_ai.system


    @property
    def builds(self) -> bool:
        """Does the app build a provider for it (some tiers are only declared)?"""
        return self.provider is not None or self.open is not None

    async def build(self, ctx: TierContext) -> Provider:
        """The tier's provider, opened; the caller closes it (`Provider.close`)."""
        if self.open is not None:
            return await self.open(ctx)
        assert self.provider is not None, f"tier {self.name} builds no provider"
        return self.provider(ctx)


class Registry:
    def __init__(self, specs: list[TierSpec]) -> None:
        self._specs = {s.name: s for s in specs}
        self.version = 0   # bumped on every change: the config model is rebuilt
        self._index()

    def _index(self) -> None:
        """The sets every turn asks for, computed once per change of the registry."""
        specs = self._specs.values()
        self._offsite = frozenset(s.name for s in specs if s.offsite)
        self._generative = frozenset(s.name for s in specs if s.generative)
        self._cannot_continue = frozenset(s.name for s in specs if not s.continues)
        self._primary = next((s.name for s in specs if s.primary), None)
        self._last = next((s.name for s in specs if s.last_resort), "")

    def __getitem__(self, name: str) -> TierSpec:
        return self._specs[name]

    def get(self, name: str) -> TierSpec | None:
        return self._specs.get(name)

    def all(self) -> list[TierSpec]:
        return list(self._specs.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def generative(self) -> list[TierSpec]:
        return [s for s in self._specs.values() if s.generative]

    def offsite(self) -> frozenset[str]:
        return self._offsite

    def primary(self) -> str | None:
        return self._primary

    def last_resort(self) -> str:
        return self._last

    def cannot_continue(self) -> frozenset[str]:
        return self._cannot_continue

    def generative_names(self) -> frozenset[str]:
        return self._generative

    def supports(self, settings: Settings, tier: str, feature: str) -> bool:
        """Can `tier` honour tools (`supports_tools`) or JSON schemas, as configured?"""
        cfg = settings.tiers.get(tier)
        return bool(cfg is not None and getattr(cfg, feature, False))

    @contextlib.contextmanager
    def added(self, spec: TierSpec, before: str | None = None) -> Iterator[TierSpec]:
        """A tier added for as long as the block runs (tests; plug-ins at startup)."""
        saved = dict(self._specs)
        items = list(self._specs.items())
        at = next((i for i, (n, _) in enumerate(items) if n == before), len(items))
        items.insert(at, (spec.name, spec))
        self._specs = dict(items)
        self.version += 1
        self._index()
        try:
            yield spec
        finally:
            self._specs = saved
            self.version += 1
            self._index()


@cache
def registry() -> Registry:
    return Registry([import_module(m).TIER for m in TIER_MODULES])
