"""Route planning: which tiers an answer may come from, in which order. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Deadlines, IntentConfig
from gateway.errors import PrivacyViolation
from gateway.health.states import SKIPPED, TierHealth
from gateway.tiers import registry


@dataclass(frozen=True, slots=True)
class RoutePlan:
    intent: IntentConfig
    ladder: tuple[str, ...]
    deadlines: Deadlines
    skipped: tuple[tuple[str, str], ...] = ()  # (tier, reason) left out before the race
    offsite: str = ""   # this turn's policy when it differs from the intent's (private talk)

    @property
    def private(self) -> bool:
        return self.intent.private

    @property
    def policy(self) -> str:
        """Where this turn may go: allowed, redacted or never."""
        return self.offsite or self.intent.offsite


def plan_route(
    intent: IntentConfig,
    *,
    enabled: tuple[str, ...],
    health: Callable[[str], TierHealth],
    pin: str | None = None,
    tool_tiers: frozenset[str] | None = None,
    format_tiers: frozenset[str] | None = None,
    private_turn: IntentConfig | None = None,
    stock_tier: str | None = None,
) -> RoutePlan:
    """Build the ladder for one turn.

    `pin` forces one tier (static stays behind it as the last resort) unless the
    intent is private and the pinned tier is not in its ladder: pinning never
    takes a private conversation off-site. `tool_tiers`, when the request carries
    tools, keeps only the generative tiers that can call tools; `format_tiers`, when it asks
    for JSON (response_format), only those that honour it. `private_turn`, the private
    intent an earlier turn of the conversation matched, keeps the whole turn on-site.
    """
    offsite = "never" if private_turn is not None else intent.offsite
    ladder = list(intent.ladder)
    if pin is not None and (offsite != "never" or pin in intent.ladder):
        ladder = [pin]
    elif stock_tier is not None and stock_tier not in ladder:
        # Whatever intent a stock question landed in, the lot answers it before a canned
        # reply does: after every model of the ladder, which can say more, and before the
        # last resort.
        at = len(ladder) - (ladder[-1] == registry().last_resort())
        ladder.insert(at, stock_tier)
    skipped: list[tuple[str, str]] = []
    kept: list[str] = []
    offsite_tiers, last = registry().offsite(), registry().last_resort()
    for tier in ladder:
        if tier == last:
            continue
        if tier not in enabled:
            skipped.append((tier, "disabled in configuration"))
        elif offsite == "never" and tier in offsite_tiers:
            why = f"an earlier turn is {private_turn.name}" if private_turn is not None \
                else f"intent {intent.name} is never sent off-site"
            skipped.append((tier, f"private conversation: {why}"))
        elif tool_tiers is not None and tier not in tool_tiers:
            skipped.append((tier, "cannot serve requests with tools"))
        elif format_tiers is not None and tier not in format_tiers:
            skipped.append((tier, "cannot honour response_format"))
        elif (h := health(tier)).state in SKIPPED or h.skip:
            skipped.append((tier, f"{h.state}: {h.reason}" if h.reason else h.state))
        else:
            kept.append(tier)
    kept.append(last)  # always available, always last
    check_offsite(intent.name, offsite, kept)
    return RoutePlan(intent, tuple(kept), intent.deadlines, tuple(skipped), offsite)


def check_offsite(intent: str, offsite: str, tiers: list[str] | tuple[str, ...]) -> None:
    """Refuse to dispatch an on-site-only turn to an off-site tier, whatever built the
    ladder."""
    if offsite == "never" and registry().offsite() & set(tiers):
        raise PrivacyViolation(
            f"intent {intent} is private and may not be sent to an off-site tier")
