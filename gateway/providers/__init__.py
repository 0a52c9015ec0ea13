"""The tiers' providers, and the face a new tier is written against.

A tier's module imports what it needs from here: its config section's base and number
types, the stream it yields and the errors it raises, the shared streaming client, the
probe helpers, and its registry spec (docs/design.md, "Adding a tier"). Everything else in
the gateway is its business, not the tier's.
"""

from __future__ import annotations

from gateway.config.base import Count, Flag, HealthConfig, Seconds, TierConfig
from gateway.errors import (
    TierBusy,
    TierContentPolicy,
    TierError,
    TierMisconfigured,
    TierRejectedInput,
    TierUnavailable,
    TierUnreachable,
)
from gateway.health.probes import Verdict, get, models_listed
from gateway.providers.base import (
    HEADERS,
    Delta,
    Provider,
    StreamEvent,
    TierRequest,
    Usage,
)
from gateway.providers.completions import json_object, open_stream
from gateway.security.upstream_keys import KeySource
from gateway.sse import SSEDecoder
from gateway.tiers import ProbeTarget, Targets, TierContext, TierSpec

__all__ = [
    "HEADERS", "Count", "Delta", "Flag", "HealthConfig", "KeySource", "ProbeTarget",
    "Provider", "SSEDecoder", "Seconds", "StreamEvent", "Targets", "TierBusy", "TierConfig",
    "TierContentPolicy", "TierContext", "TierError", "TierMisconfigured",
    "TierRejectedInput", "TierRequest", "TierSpec", "TierUnavailable", "TierUnreachable",
    "Usage", "Verdict", "get", "json_object", "models_listed", "open_stream",
]
