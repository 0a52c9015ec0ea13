"""Prometheus metrics (prometheus-client), one registry per app, served at /metrics."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from gateway import __version__
from gateway.health.states import State

# `_created` series double every counter and histogram for nothing a dashboard uses.
disable_created_metrics()
OTHER_KEYS = "other"   # the label for frontend keys past `max_key_labels`


def build_commit() -> str:
    """The commit this build came from: SCOUT_COMMIT (set by the image build), else git."""
    if os.environ.get("SCOUT_COMMIT"):
        return os.environ["SCOUT_COMMIT"][:12]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=2, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1)


def multiprocess_dir() -> str | None:
    """Set by `serve --workers N`: every worker writes its values there; a scrape sums them."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_key_labels: int = 20) -> None:
        r = self.registry = CollectorRegistry()
        # The standard process (CPU, memory, fds), platform and GC series.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.build = Gauge("scout_build_info", "Always 1: the version and commit serving",
                           ["version", "commit"], registry=r, multiprocess_mode="livemax")
        self.build.labels(__version__, build_commit()).set(1)
        self.max_key_labels = max_key_labels
        self._keys_seen: set[str] = set()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.key_requests = Counter("scout_key_requests", "Answers per frontend API key label",
                                    ["key"], registry=r)
        self.key_spend = Counter("scout_key_spend_usd", "Spend in USD per frontend API key label",
                                 ["key"], registry=r)
        self.cost_saved = Counter("scout_cost_saved_usd",
                                  "What the same answers would have cost at OpenAI's prices, "
                                  "minus what they cost", registry=r)
        self.store_up = Gauge("scout_store_up", "1 while the shared store (Redis) answers",
                              registry=r, multiprocess_mode="livemin")
        self.key_age = Gauge("scout_key_age_seconds",
                             "Age of each upstream and frontend key (file mtime or rotated_at)",
                             ["key"], registry=r, multiprocess_mode="livemax")
        self.key_rotation_due = Gauge("scout_key_rotation_due_seconds",
                                      "Seconds until each key is due for rotation (negative: "
                                      "overdue)", ["key"], registry=r,
                                      multiprocess_mode="livemin")
        self.requests = Counter("scout_requests", "Answers by intent, first serving tier and outcome",
                                ["intent", "tier", "outcome"], registry=r)
        self.ttft = Histogram("scout_time_to_first_token_seconds",
                              "From request accepted to first token sent, by serving tier",
                              ["tier"], buckets=LATENCY_BUCKETS, registry=r)
        self.duration = Histogram("scout_request_duration_seconds",
                                  "From request accepted to the last token, by serving tier",
                                  ["tier"], buckets=LATENCY_BUCKETS, registry=r)
        self.fallbacks = Counter("scout_fallbacks",
                                 "Hand-overs between tiers (failed, hedge, stalled, dropped, skipped)",
                                 ["from_tier", "to_tier", "reason"], registry=r)
        self.hedges = Counter("scout_hedges", "Hedged answers, by the tier that won",
                              ["winner"], registry=r)
        self.resumes = Counter("scout_resumes", "Answers resumed mid-stream by another tier",
                               ["from_tier", "to_tier"], registry=r)
        self.replica_turns = Counter("scout_replica_turns",
                                     "Answers (or parts) by on-prem replica", ["replica"],
                                     registry=r)
        self.prompt_tokens = Counter("scout_replica_prompt_tokens",
                                     "Prompt tokens read by each replica", ["replica"],
                                     registry=r)
        self.cached_tokens = Counter("scout_replica_cached_prompt_tokens",
                                     "Of those, read from its prefix cache (when it says)",
                                     ["replica"], registry=r)
        self.malformed = Counter("scout_malformed_events",
                                 "Malformed stream events skipped, by tier (the stream went on)",
                                 ["tier"], registry=r)
        self.restarts = Counter("scout_restarts",
                                "Resumed answers that began anew and replaced the cut one",
                                ["tier"], registry=r)
        self.cache = Counter("scout_cache_lookups", "Cache lookups of cacheable questions",
                             ["result"], registry=r)  # fresh_hit, stale_hit, miss
        self.static = Counter("scout_static_replies", "Canned replies served as the last resort",
                              ["intent"], registry=r)
        self.tokens = Counter("scout_tokens", "Tokens by tier", ["tier", "kind"], registry=r)
        self.cost = Counter("scout_cost_usd", "Spend in USD by tier", ["tier"], registry=r)
        self.offsite_turns = Counter("scout_offsite_turns",
                                     "Turns sent to an off-site tier, by intent", ["intent"],
                                     registry=r)
        self.pii_redacted = Counter("scout_pii_redacted",
                                    "Personal values replaced before leaving, by kind", ["kind"],
                                    registry=r)
        self.hedge_delay = Gauge("scout_hedge_delay_seconds",
                                 "When a turn starting now would hedge each tier", ["tier"],
                                 registry=r, multiprocess_mode="livemax")
        self.hedge_budget = Gauge("scout_hedge_budget_used",
                                  "Hedges in the window as a share of the budget (1: exhausted)",
                                  registry=r, multiprocess_mode="livemax")
        self.rate_limited = Counter("scout_rate_limited", "Requests refused by a rate limit",
                                    ["scope"], registry=r)
        self.overhead = Histogram("scout_gateway_overhead_seconds",
                                  "Latency the gateway itself adds before the first token",
                                  buckets=OVERHEAD_BUCKETS, registry=r)
        # With several workers: live counts add up; a state is 1 if any live worker sees it.
        self.websockets = Gauge("scout_active_websockets", "Open /ws/chat sockets",
                                registry=r, multiprocess_mode="livesum")
        self.sessions = Gauge("scout_active_sessions",
                              "Sessions with a turn in the last 10 minutes",
                              registry=r, multiprocess_mode="livesum")
        self.tier_state = Gauge("scout_tier_state", "1 for each tier's current state",
                                ["tier", "state"], registry=r, multiprocess_mode="livemax")
        self.target_state = Gauge("scout_target_state",
                                  "1 for each probed target's state (path, replicas, OpenAI)",
                                  ["target", "state"], registry=r, multiprocess_mode="livemax")

    def exposition(self) -> bytes:
        """Prometheus text: this process's registry, or every worker's values summed."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)

    def key_label(self, label: str) -> str:
        """A frontend key's label as a metric label: the first `max_key_labels` seen keep
        their own, later ones share "other" (label sets stay bounded)."""
        if label in self._keys_seen:
            return label
        if len(self._keys_seen) < self.max_key_labels:
            self._keys_seen.add(label)
            return label
        return OTHER_KEYS

    def child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, kept: prometheus-client checks the values and takes a
        lock on every call, and an answer updates a dozen series. The label sets are
        bounded (intents, tiers, outcomes, `max_key_labels`), so is this."""
        key = (metric, values)
        kid = self._children.get(key)
        if kid is None:
            kid = self._children[key] = metric.labels(*values)
        return kid

    def set_state(self, gauge: Gauge, label: str, state: str) -> None:
        for s in State:
            gauge.labels(label, s).set(1 if s == state else 0)
