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


def recorder(settings: Settings, metrics: Metrics, stats: Stats) -> TurnObserver:
    primary, last = registry().primary(), registry().last_resort()
    reference = reference_model(settings)   # the saving's baseline: the paid backup's price
    m, kid = metrics, metrics.child

    def observe(turn: Turn, outcome: TurnOutcome) -> None:
        intent = outcome.intent
        tier = outcome.served_by[0] if outcome.served_by else "none"
        result = "error" if not outcome.complete else ("resumed" if outcome.resumed else "ok")
        kid(m.requests, intent, tier, result).inc()
        if outcome.ttft_ms is not None:
            kid(m.ttft, tier).observe(outcome.ttft_ms / 1000)
        kid(m.duration, tier).observe(outcome.total_ms / 1000)
        for sw in outcome.switches:
            kid(m.fallbacks, sw.from_tier, sw.to_tier, sw.kind).inc()
            if sw.kind in (SwitchKind.STALLED, SwitchKind.DROPPED):
                kid(m.resumes, sw.from_tier, sw.to_tier).inc()
            if sw.kind is SwitchKind.RESTART:
                kid(m.restarts, sw.to_tier).inc()
        for _, replica, prompt_tokens, cached in outcome.prefix:
            if replica:   # prefix hit rate = cached ÷ prompt, per replica
                kid(m.replica_turns, replica).inc()
                kid(m.prompt_tokens, replica).inc(prompt_tokens)
                if cached is not None:
                    kid(m.cached_tokens, replica).inc(cached)
        for bad_tier, n in outcome.malformed.items():
            kid(m.malformed, bad_tier).inc(n)
        for skipped, _ in turn.plan.skipped:
            kid(m.fallbacks, skipped, turn.plan.ladder[0], "skipped").inc()
        if outcome.hedged:
            kid(m.hedges, outcome.hedge_winner or "none").inc()
        cache = cache_result(turn, outcome)
        if cache is not None:
            kid(m.cache, {"fresh": "fresh_hit", "stale": "stale_hit"}.get(cache, cache)).inc()
        if last in outcome.served_by:
            kid(m.static, intent).inc()
        for part_tier, prompt, completion, usd in outcome.parts:
            kid(m.tokens, part_tier, "prompt").inc(prompt)
            kid(m.tokens, part_tier, "completion").inc(completion)
            kid(m.cost, part_tier).inc(usd)
        if outcome.ttft_ms is not None and outcome.race_ttft_ms is not None:
            m.overhead.observe(max(0.0, outcome.ttft_ms - outcome.race_ttft_ms) / 1000)
        key = m.key_label(turn.key_label or "anonymous")
        kid(m.key_requests, key).inc()
        kid(m.key_spend, key).inc(outcome.cost_usd)
        equivalent = 0.0 if reference is None else cost_usd(
            settings.prices, reference, outcome.prompt_tokens, outcome.completion_tokens)
        m.cost_saved.inc(max(0.0, equivalent - outcome.cost_usd))
        stats.record_turn(outcome.served_by, outcome.ttft_ms,
                          counts_for_fallback=(primary in turn.plan.intent.ladder
                                               and outcome.cached != "fresh"),
                          cost_usd=outcome.cost_usd,
                          openai_equivalent_usd=equivalent, cache=cache,
                          prefix=outcome.prefix)
    return observe
