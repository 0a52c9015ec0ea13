"""Prometheus metrics (prometheus-client), one registry per app, served at /metrics."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from gateway.health.probes import STATES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1)


def multiprocess_dir() -> str | None:
    """Set by `serve --workers N`: every worker writes its values there; a scrape sums them."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
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

    def set_state(self, gauge: Gauge, label: str, state: str) -> None:
        for s in STATES:
            gauge.labels(label, s).set(1 if s == state else 0)
