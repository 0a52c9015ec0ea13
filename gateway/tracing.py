"""OpenTelemetry traces of every turn, off by default, on with the standard OTEL_* variables.

On when `OTEL_TRACES_EXPORTER` (not `none`), `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`);
spans go out over OTLP/HTTP as those variables say (collector, Tempo, Jaeger...).

What a trace holds, with the maintained aiohttp instrumentations at both ends:
- the server span of the HTTP request (aiohttp server instrumentation);
- one `chat` span per turn: intent, plan, served_by, TTFT, cost; events for a fresh cache
  hit, each hedge and each switch;
- one `chat <model>` CLIENT span per tier attempt, following the GenAI semantic
  conventions (`gen_ai.operation.name`, `gen_ai.system`, `gen_ai.request.model`,
  `gen_ai.response.model`, `gen_ai.usage.input_tokens`/`output_tokens`), with the time to
  first token, and an event when personal data was redacted (counts, never values);
- the HTTP client span of the upstream call (aiohttp client instrumentation), which
  carries `traceparent` to on-prem (vLLM can continue the trace) — and to OpenAI only
  with `openai.propagate_trace: true`.

No message text goes into a span unless OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
is `true` (the GenAI instrumentations' own switch). With tracing off nothing is created:
every hook checks `enabled` first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode


def _gen_ai_system(tier: str) -> str:
    from gateway.tiers import registry
    spec = registry().get(tier)
    return (spec.gen_ai_system if spec is not None else "") or "scout"


def wanted(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "")
    return (bool(exporter) and exporter != "none") or bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def capture_content(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true"


def default_provider() -> trace.TracerProvider:
    """The SDK's provider with the OTLP/HTTP exporter, configured by OTEL_* variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from gateway import __version__
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                               "scout-gateway"),
                                "service.version": __version__}).merge(
        OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class Tracing:
    """The app's tracer, or nothing at all when tracing is off."""

    def __init__(self, provider: trace.TracerProvider | None = None,
                 content: bool = False) -> None:
        self.enabled = provider is not None
        self.provider = provider
        self.content = content
        self.tracer = provider.get_tracer("scout.gateway") if provider is not None else None

    # -- the maintained instrumentations ------------------------------------------------

    def server_middleware(self) -> Any:
        """The instrumentation's middleware for this app only (its instrumentor would patch
        every aiohttp Application in the process). URL exclusions come from
        OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS (e.g. livez,readyz), as usual."""
        from aiohttp import web
        from opentelemetry.instrumentation import aiohttp_server
        if aiohttp_server.active_requests_counter is None:
            # The instrumentor sets up the middleware's settings and meters, then swaps
            # web.Application for an instrumented subclass; this app adds the middleware
            # itself, so the class is put back (other aiohttp apps stay untouched).
            import warnings
            original = web.Application
            with warnings.catch_warnings():   # aiohttp frowns on its subclass, unused here
                warnings.simplefilter("ignore", DeprecationWarning)
                aiohttp_server.AioHttpServerInstrumentor().instrument(
                    tracer_provider=self.provider)
            web.Application = original  # type: ignore[misc]
        return aiohttp_server.create_aiohttp_middleware(tracer_provider=self.provider)

    def client_trace_configs(self) -> list[aiohttp.TraceConfig]:
        """For an upstream ClientSession: client spans, and `traceparent` injected."""
        if not self.enabled:
            return []
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config
        return [create_trace_config(tracer_provider=self.provider)]

    # -- turns and attempts ----------------------------------------------------------

    def start_turn(self, intent: str, ladder: tuple[str, ...], turn_id: str,
                   question: str = "") -> Span | None:
        if self.tracer is None:
            return None
        span = self.tracer.start_span("chat", kind=SpanKind.INTERNAL, attributes={
            "gen_ai.operation.name": "chat", "scout.turn.id": turn_id, "scout.intent": intent,
            "scout.ladder": list(ladder)})
        if self.content and question:
            span.add_event("gen_ai.user.message", {"content": question})
        return span

    def start_attempt(self, turn: Span | None, tier: str, model: str, resume: bool) -> Span | None:
        if self.tracer is None or turn is None:
            return None
        ctx = trace.set_span_in_context(turn)
        return self.tracer.start_span(f"chat {model}", context=ctx, kind=SpanKind.CLIENT,
                                      attributes={
                                          "gen_ai.operation.name": "chat",
                                          "gen_ai.system": _gen_ai_system(tier),
                                          "gen_ai.request.model": model,
                                          "scout.tier": tier, "scout.resume": resume})

    @staticmethod
    def end_attempt(span: Span | None, outcome: str, *, ttft_s: float | None = None,
                    response_model: str | None = None, usage: tuple[int, int] | None = None,
                    error: str | None = None) -> None:
        if span is None:
            return
        span.set_attribute("scout.attempt.outcome", outcome)
        if ttft_s is not None:
            span.set_attribute("gen_ai.response.time_to_first_token", ttft_s)
        if response_model:
            span.set_attribute("gen_ai.response.model", response_model)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage[0])
            span.set_attribute("gen_ai.usage.output_tokens", usage[1])
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    @staticmethod
    def event(span: Span | None, name: str, attributes: dict[str, Any] | None = None) -> None:
        if span is not None:
            span.add_event(name, attributes or {})

    def end_turn(self, span: Span | None, attributes: dict[str, Any], error: str = "",
                 answer: str = "") -> None:
        if span is None:
            return
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if self.content and answer:
            span.add_event("gen_ai.choice", {"content": answer})
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


def current_event(name: str, attributes: dict[str, Any]) -> None:
    """An event on whatever span is current (the tier attempt, inside a provider)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)
