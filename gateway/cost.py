"""Cost arithmetic. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.config import Price


def estimate_tokens(text: str) -> int:
    """Roughly four characters a token, when the upstream reports no usage."""
    return (len(text) + 3) // 4 if text else 0


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(str(p.get("text", "")) for p in c if isinstance(p, dict))
    return "\n".join(parts)


def cost_usd(prices: Mapping[str, Price], model: str, prompt_tokens: int,
             completion_tokens: int) -> float:
    """Price one model's share of an answer; models without a price (cache, static) cost 0."""
    price = prices.get(model)
    if price is None:
        return 0.0
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
