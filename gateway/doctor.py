"""`scout-gateway check`: try each provider once, for real, and say what works in words."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from gateway.config import Settings
from gateway.errors import TierError
from gateway.providers.base import Delta, Provider, TierRequest
from gateway.tiers import TierContext, registry


async def _try(provider: Provider, settings: Settings, timeout_s: float) -> tuple[bool, str]:
    intent = settings.intents[settings.default_intent]
    request = TierRequest(messages=[{"role": "user", "content": "Say OK."}], intent=intent,
                          params={"max_tokens": 1})
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            async for ev in provider.stream(request):
                if isinstance(ev, Delta):
                    ms = (time.perf_counter() - started) * 1000
                    return True, f"answered with model {ev.model} in {ms:.0f} ms"
        return False, "the stream ended without a token"
    except TimeoutError:
        return False, f"no token within {timeout_s:g} s"
    except TierError as exc:
        spec = registry().get(provider.tier)
        hint = spec.hints.get(exc.kind, "") if spec is not None else ""
        return False, f"{exc.reason}" + (f" — {hint}" if hint else "")


async def run_checks(settings: Settings, say: Callable[[str], object],
                     timeout_s: float = 15.0) -> bool:
    ok = True
    async with aiohttp.ClientSession() as session:
        providers: list[Provider] = [
            spec.provider(TierContext(settings, session)) for spec in registry().generative()
            if settings.tiers[spec.name].enabled and spec.provider is not None]
        results = await asyncio.gather(*(_try(p, settings, timeout_s) for p in providers))
        for provider, (good, words) in zip(providers, results, strict=True):
            ok &= good
            say(f"{'OK  ' if good else 'FAIL'} {provider.tier}: {words}")
            await provider.close()
    return ok
