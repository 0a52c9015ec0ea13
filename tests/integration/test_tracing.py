"""OpenTelemetry traces: the span tree of a hedged turn (the SDK's in-memory exporter), and
spans arriving at a real OTLP/HTTP receiver decoding the protobuf the SDK sends."""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.appkeys import TRACING
from tests.conftest import make_settings
from tests.sse_client import read_events

# Not a stock question, so static is the last resort (the lot would answer one).
MARKER = "Zebrafinch-4417 wants a recommendation for a long commute, call 555-867-5309"


async def test_a_hedged_turn_is_one_span_tree_with_genai_attributes_and_no_text(
        gw_client, onprem_sim, openai_sim):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    onprem_sim.knobs.ttft_s = 1.0     # slow first token: hedged, OpenAI answers first ...
    await openai_sim.set_fault("drop", fault_after=3)   # ... then drops: a switch to static
    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1",
                             deadlines={"headers_s": 0.5, "first_token_s": 0.5, "gap_s": 2})
    client = await gw_client(create_app(settings, tracer_provider=provider))
    events = await read_events(await client.post("/api/chat", json={"message": MARKER}))
    assert events[-1][1]["served_by"] == ["openai", "static"]
    assert sum(e[0] == "switch" for e in events) == 2
    spans = exporter.get_finished_spans()
    by_name = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    server = by_name["POST /api/chat"][0]
    chat = by_name["chat"][0]
    assert chat.parent is not None and chat.parent.span_id == server.context.span_id
    assert chat.attributes["scout.intent"] == "vehicle.recommendation"
    assert list(chat.attributes["scout.served_by"]) == ["openai", "static"]
    assert [e.name for e in chat.events] == ["scout.hedge", "scout.switch"]
    assert chat.events[1].attributes["scout.reason"].startswith("dropped mid-answer")
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    onprem = by_name["chat llama-3.1-70b-instruct"][0]
    openai = by_name["chat gpt-4o-mini"][0]
    for attempt in (onprem, openai):
        assert attempt.parent.span_id == chat.context.span_id
        assert attempt.attributes["gen_ai.operation.name"] == "chat"
    assert onprem.attributes["gen_ai.system"] == "vllm"
    assert onprem.attributes["scout.attempt.outcome"].startswith("cancelled")
    assert openai.attributes["gen_ai.system"] == "openai"
    assert openai.attributes["gen_ai.response.time_to_first_token"] > 0
    assert openai.attributes["scout.attempt.outcome"] == "failed: unavailable"
    static = by_name["chat scout-static"][0]
    assert static.attributes["scout.resume"] is True
    assert static.attributes["gen_ai.response.model"] == "scout-static"
    # The HTTP client span of each upstream call hangs under its attempt ...
    clients = [s for s in spans if s.name == "POST" and s.parent is not None]
    assert {c.parent.span_id for c in clients} >= {onprem.context.span_id}
    # ... and on-prem got the trace context; OpenAI, by default, did not.
    assert onprem_sim.stats.last_traceparent is not None
    assert f"{chat.context.trace_id:032x}" in onprem_sim.stats.last_traceparent
    assert openai_sim.stats.last_traceparent is None
    # No message text anywhere in the trace.
    for s in spans:
        blob = f"{dict(s.attributes or {})} {[(e.name, dict(e.attributes or {})) for e in s.events]}"
        assert "Zebrafinch" not in blob and "555-867" not in blob, s.name


async def test_spans_reach_a_real_otlp_http_receiver(gw_client, onprem_sim, openai_sim,
                                                     aiohttp_server, monkeypatch):
    received: list[ExportTraceServiceRequest] = []
    arrived = asyncio.Event()

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        received.append(msg)
        arrived.set()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    collector = await aiohttp_server(app)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(collector.make_url("")).rstrip("/"))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scout-gateway-test")
    gateway = create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1"))
    assert gateway[TRACING].enabled, "on with the standard OTEL_* variables"
    client = await gw_client(gateway)
    await read_events(await client.post("/api/chat", json={"message": "recommend a hybrid"}))
    await asyncio.to_thread(gateway[TRACING].provider.force_flush)
    async with asyncio.timeout(10):
        await arrived.wait()
    names, services = set(), set()
    for msg in received:
        for rs in msg.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes
                         if a.key == "service.name"}
            for ss in rs.scope_spans:
                names |= {s.name for s in ss.spans}
    assert services == {"scout-gateway-test"}
    assert {"chat", "POST /api/chat", "chat llama-3.1-70b-instruct"} <= names
    await asyncio.to_thread(gateway[TRACING].provider.shutdown)


def test_tracing_is_off_without_otel_variables(settings, monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not create_app(settings)[TRACING].enabled
