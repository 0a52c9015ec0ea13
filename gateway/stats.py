"""Per-minute counters for the dashboard and the fallback alert, shared by every process.

Each process adds what it saw to in-memory counters; the monitor's tick
flushes them to one hash per minute in the shared KV (HINCRBY), and a day
hash for spend. Readers sum the minutes they need, so the page shows the
whole fleet, not the process that served it. Gauges (open sockets, active
sessions) are written per process under their own field and summed.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gateway.state import keys
from gateway.state.kv import KV

TTFT_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 15000)
MINUTE_TTL_S = 2 * 3600
DAY_TTL_S = 3 * 86400
NANO = 1_000_000_000  # spend is counted in nano-dollars so it adds up exactly


def minute_key(minute: int) -> str:
    return f"{keys.COUNTER}min:{minute}"


def day_key(day: str) -> str:
    return f"{keys.COUNTER}day:{day}"


def ttft_bucket(ms: float) -> int:
    return bisect.bisect_left(TTFT_BUCKETS_MS, ms)


def percentile_ms(buckets: dict[int, int], p: float) -> float | None:
    """The p-th percentile, interpolated linearly within the bucket that holds it (as
    Prometheus' histogram_quantile does), not the bucket's upper edge. Pure."""
    total = sum(buckets.values())
    if not total:
        return None
    need, seen = p / 100 * total, 0
    for i in sorted(buckets):
        if i >= len(TTFT_BUCKETS_MS):      # past the last edge: that edge is all we know
            return float(TTFT_BUCKETS_MS[-1])
        if seen + buckets[i] >= need:
            low = TTFT_BUCKETS_MS[i - 1] if i > 0 else 0.0
            high = TTFT_BUCKETS_MS[i]
            return low + (high - low) * (need - seen) / buckets[i]
        seen += buckets[i]
    return float(TTFT_BUCKETS_MS[-1])


class Stats:
    def __init__(self, kv: KV, process_id: str, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.me = process_id
        self.clock = clock
        self._minutes: dict[int, Counter[str]] = {}
        self._days: dict[str, Counter[str]] = {}
        self._day_of: tuple[int, str] = (-1, "")
        self.gauge_sources: dict[str, Callable[[], int]] = {}  # read at each flush
        from gateway.tiers import registry
        self.primary = registry().primary()   # answers from any other tier are fallbacks

    def add(self, fields: dict[str, int]) -> None:
        c = self._minutes.setdefault(int(self.clock() // 60), Counter())
        c.update(fields)

    def add_day(self, fields: dict[str, int]) -> None:
        self._days.setdefault(self._day(), Counter()).update(fields)

    def _day(self) -> str:
        """Today (UTC) as the store's day key names it; formatted once a day, not per turn."""
        n = int(self.clock() // 86400)
        if self._day_of[0] != n:
            self._day_of = (n, time.strftime("%Y-%m-%d", time.gmtime(n * 86400)))
        return self._day_of[1]

    def record_turn(self, served_by: list[str], ttft_ms: float | None, counts_for_fallback: bool,
                    cost_usd: float, openai_equivalent_usd: float, cache: str | None,
                    prefix: list[tuple[str, str, int, int | None]] | None = None) -> None:
        first = served_by[0] if served_by else "none"
        fields = {"req": 1, f"req:{first}": 1}
        for _, replica, prompt, cached in prefix or ():
            if replica:   # turns per replica, and its prefix cache's share of the prompt
                fields[f"rep:{replica}"] = fields.get(f"rep:{replica}", 0) + 1
                if cached is not None:
                    fields[f"rep_p:{replica}"] = fields.get(f"rep_p:{replica}", 0) + prompt
                    fields[f"rep_c:{replica}"] = fields.get(f"rep_c:{replica}", 0) + cached
        if counts_for_fallback:
            fields["fb_base"] = 1
            if first != self.primary:
                fields["fallback"] = 1
        if cache:
            fields[f"cache:{cache}"] = 1
        if ttft_ms is not None:
            fields[f"ttft:{ttft_bucket(ttft_ms)}"] = 1
        self.add(fields)
        self.add_day({"spend": round(cost_usd * NANO), "equiv": round(openai_equivalent_usd * NANO),
                      "req": 1})

    async def flush(self) -> None:
        """Push what this process counted; keep it if the store can't take it now."""
        for minute, counter in list(self._minutes.items()):
            if await self.kv.hash_add(minute_key(minute), dict(counter), MINUTE_TTL_S):
                del self._minutes[minute]
        for day, counter in list(self._days.items()):
            if await self.kv.hash_add(day_key(day), dict(counter), DAY_TTL_S):
                del self._days[day]
        if self.gauge_sources:
            await self.kv.hash_set(minute_key(int(self.clock() // 60)),
                                   {f"{k}@{self.me}": read() for k, read in
                                    self.gauge_sources.items()}, MINUTE_TTL_S)

    async def minutes(self, n: int) -> list[tuple[int, dict[str, int]]]:
        """The last n minutes (oldest first), this process's unflushed counts included."""
        now = int(self.clock() // 60)
        wanted = list(range(now - n + 1, now + 1))
        shared = await self.kv.hash_all([minute_key(m) for m in wanted]) or [{} for _ in wanted]
        out = []
        for m, h in zip(wanted, shared, strict=True):
            merged = Counter(h)
            merged.update(self._minutes.get(m, {}))
            out.append((m, dict(merged)))
        return out

    async def today(self) -> dict[str, int]:
        day = self._day()
        shared = (await self.kv.hash_all([day_key(day)]) or [{}])[0]
        merged = Counter(shared)
        merged.update(self._days.get(day, {}))
        return dict(merged)

    async def fallback_rate(self, window_s: float) -> tuple[int, float]:
        rows = await self.minutes(max(1, int(window_s // 60)))
        base = sum(h.get("fb_base", 0) for _, h in rows)
        fell = sum(h.get("fallback", 0) for _, h in rows)
        return base, (fell / base if base else 0.0)


def gauge_total(row: dict[str, int], name: str) -> int:
    """Sum a gauge over the processes that wrote it into a minute's hash."""
    return sum(v for k, v in row.items() if k.startswith(name + "@"))


def summarize(rows: list[tuple[int, dict[str, Any]]], now: float) -> dict[str, Any]:
    """Tiles from minute rows (oldest first, the last one the current minute). Pure."""
    def total(field: str, last: int | None = None) -> int:
        sel = rows if last is None else rows[-last:]
        return sum(h.get(field, 0) for _, h in sel)

    # A rolling rate over the previous minute and the part of this one gone by.
    frac = (now % 60) / 60
    recent = [h.get("req", 0) for _, h in rows[-2:]]
    per_min = sum(recent) / (frac + (1 if len(recent) > 1 else 0)) if recent and (
        frac or len(recent) > 1) else 0.0
    buckets: Counter[int] = Counter()
    for _, h in rows[-5:]:
        for k, v in h.items():
            if k.startswith("ttft:"):
                buckets[int(k[5:])] += v
    cache_hits = total("cache:fresh") + total("cache:stale")
    cache_all = cache_hits + total("cache:miss")
    avail_n = total("avail:n")
    fb_base = total("fb_base", 5)
    return {
        "requests_per_min": round(per_min, 1),
        "requests_last_hour": total("req"),
        "ttft_p50_ms": percentile_ms(buckets, 50),
        "ttft_p95_ms": percentile_ms(buckets, 95),
        "fallback_rate": (total("fallback", 5) / fb_base) if fb_base else None,
        "cache_hit_rate": (cache_hits / cache_all) if cache_all else None,
        "availability": (total("avail:up") / avail_n) if avail_n else None,
        "websockets": gauge_total(_latest_gauges(rows), "ws"),
        "active_sessions": gauge_total(_latest_gauges(rows), "sessions"),
        **replica_spread(rows),
    }


def replica_spread(rows: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Over the rows: each on-prem replica's share of the turns and its prefix-cache hit
    rate (cached ÷ prompt tokens, where the replica says), and the hit rate over all."""
    turns: Counter[str] = Counter()
    prompt: Counter[str] = Counter()
    cached: Counter[str] = Counter()
    for _, h in rows:
        for k, v in h.items():
            kind, _, name = k.partition(":")
            if kind == "rep":
                turns[name] += v
            elif kind == "rep_p":
                prompt[name] += v
            elif kind == "rep_c":
                cached[name] += v
    total, read = sum(turns.values()), sum(prompt.values())
    return {
        "replica_turn_share": {n: turns[n] / total for n in sorted(turns)} if total else {},
        "replica_prefix_hit_rate": {n: cached[n] / prompt[n] for n in sorted(prompt)
                                    if prompt[n]},
        "prefix_hit_rate": sum(cached.values()) / read if read else None,
    }


def _latest_gauges(rows: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """The newest minute that has gauges (a minute just begun may have none yet)."""
    for _, row in reversed(rows[-2:]):
        if any("@" in k for k in row):
            return row
    return {}
