"""What every answer costs and how it went: Prometheus metrics and the shared minute stats."""

from __future__ import annotations

from gateway.chat import Turn, TurnObserver, TurnOutcome
from gateway.config import Settings
from gateway.cost import cost_usd
from gateway.metrics import Metrics
from gateway.routing.race import SwitchKind
from gateway.stats import Stats
from gateway.tiers import registry


def cache_result(turn: Turn, outcome: TurnOutcome) -> str | None:
    if outcome.cached:   # "fresh" or "stale", as the cache tier said
        return outcome.cached
    return "miss" if turn.cacheable else None


def reference_model(settings: Settings) -> str | None:
    """The model the saving is measured against: the first off-site (paid) tier's."""
    reg = registry()
    spec = next((s for s in reg.generative() if s.offsite), None)
    return settings.tiers[spec.name].model if spec is not None else None


def openai_equivalent(settings: Settings, outcome: TurnOutcome) -> float:
    """What the answer would have cost had the paid backup served it all (the saving's
    baseline)."""
    model = reference_model(settings)
    if model is None:
        return 0.0
    return cost_usd(settings.prices, model, outcome.prompt_tokens, outcome.completion_tokens)


def recorder(settings: Settings, metrics: Metrics, stats: Stats) -> TurnObserver:
    primary, last = registry().primary(), registry().last_resort()
    def observe(turn: Turn, outcome: TurnOutcome) -> None:
        intent = outcome.intent
        tier = outcome.served_by[0] if outcome.served_by else "none"
        result = "error" if not outcome.complete else ("resumed" if outcome.resumed else "ok")
        metrics.requests.labels(intent, tier, result).inc()
        if outcome.ttft_ms is not None:
            metrics.ttft.labels(tier).observe(outcome.ttft_ms / 1000)
        metrics.duration.labels(tier).observe(outcome.total_ms / 1000)
        for sw in outcome.switches:
            metrics.fallbacks.labels(sw.from_tier, sw.to_tier, sw.kind).inc()
            if sw.kind in (SwitchKind.STALLED, SwitchKind.DROPPED):
                metrics.resumes.labels(sw.from_tier, sw.to_tier).inc()
        for skipped, _ in turn.plan.skipped:
            metrics.fallbacks.labels(skipped, turn.plan.ladder[0], "skipped").inc()
        if outcome.hedged:
            metrics.hedges.labels(outcome.hedge_winner or "none").inc()
        cache = cache_result(turn, outcome)
        if cache is not None:
            metrics.cache.labels({"fresh": "fresh_hit", "stale": "stale_hit"}.get(cache, cache)
                                 ).inc()
        if last in outcome.served_by:
            metrics.static.labels(intent).inc()
        for part_tier, prompt, completion, usd in outcome.parts:
            metrics.tokens.labels(part_tier, "prompt").inc(prompt)
            metrics.tokens.labels(part_tier, "completion").inc(completion)
            metrics.cost.labels(part_tier).inc(usd)
        if outcome.ttft_ms is not None and outcome.race_ttft_ms is not None:
            metrics.overhead.observe(max(0.0, outcome.ttft_ms - outcome.race_ttft_ms) / 1000)
        key = metrics.key_label(turn.key_label or "anonymous")
        metrics.key_requests.labels(key).inc()
        metrics.key_spend.labels(key).inc(outcome.cost_usd)
        equivalent = openai_equivalent(settings, outcome)
        metrics.cost_saved.inc(max(0.0, equivalent - outcome.cost_usd))
        stats.record_turn(outcome.served_by, outcome.ttft_ms,
                          counts_for_fallback=(primary in turn.plan.intent.ladder
                                               and outcome.cached != "fresh"),
                          cost_usd=outcome.cost_usd,
                          openai_equivalent_usd=equivalent, cache=cache)
    return observe
