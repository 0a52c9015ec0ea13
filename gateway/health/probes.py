"""Health probes: one attempt each, a short timeout, and a pure verdict on what came back.

Real server semantics (docs/operations.md, "Health monitor"): vLLM refuses connections
while it loads and keeps answering 200 on /health when overloaded, so a
replica is `up` only when /health is 200 *and* /v1/models lists the served
model; its queue (vLLM's vllm:num_requests_waiting, llama.cpp's llamacpp:requests_deferred
with --metrics) makes it `busy`. llama.cpp answers 503 while loading. 401/403 or the wrong
model is `misconfigured`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import connect_failure
from gateway.health.states import State

# Requests a replica has accepted and not started: vLLM's waiting queue, llama.cpp's
# requests deferred until a slot is free.
QUEUE_METRICS = frozenset({"vllm:num_requests_waiting", "llamacpp:requests_deferred"})
# How full its KV cache is, 0 to 1: vLLM's (named gpu_cache_usage_perc before 0.10),
# older llama.cpp servers'. Newer llama.cpp exports no such gauge (none in the llama.cpp
# that llama-cpp-python 0.3.36 vendors): there only its deferred requests are read.
CACHE_METRICS = frozenset({"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                           "llamacpp:kv_cache_usage_ratio"})


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str
    reason: str
    latency_ms: float | None = None
    waiting: float | None = None   # requests queued on the replica (its /metrics), if said
    cache_usage: float | None = None   # its KV cache in use, 0–1 (its /metrics), if said
    timed_out: bool = False   # down only because it did not answer within the probe timeout


@dataclass(frozen=True, slots=True)
class Reading:
    """What a replica's /metrics say about its load."""

    waiting: float | None = None       # requests queued, summed over models
    cache_usage: float | None = None   # KV cache in use, 0–1, the fullest model's


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What one GET returned: a status and body, or the error that stopped it."""

    status: int | None
    body: str = ""
    error: str = ""
    timed_out: bool = False   # no answer within the timeout (connected or not)


def read_metrics(metrics: str) -> Reading:
    """The replica's queue and KV cache from its Prometheus text; each None when it reports
    none, both when the text is not Prometheus text (read by prometheus_client's parser,
    the exposition format's own: a page that does not parse says nothing)."""
    queue: list[float] = []
    cache: list[float] = []
    try:
        for family in text_string_to_metric_families(metrics):
            into = queue if family.name in QUEUE_METRICS else \
                cache if family.name in CACHE_METRICS else None
            if into is not None:
                into.extend(s.value for s in family.samples if s.name == family.name)
    except (ValueError, TypeError, IndexError):
        return Reading()
    return Reading(sum(queue) if queue else None,
                   min(1.0, max(0.0, max(cache))) if cache else None)



def models_listed(body: str) -> list[str] | None:
    import orjson
    try:
        data = orjson.loads(body)
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None


def judge_replica(health: HttpResult, models: HttpResult | None, metrics: HttpResult | None,
                  model: str, busy_waiting: int) -> Verdict:
    """The state of one replica from its /health, /v1/models and /metrics. Pure."""
    if health.status is None:
        return Verdict(State.DOWN, health.error or "no answer", timed_out=health.timed_out)
    if health.status in (401, 403):
        return Verdict(State.MISCONFIGURED, f"/health refused our API key ({health.status})")
    if health.status == 503:
        return Verdict(State.LOADING, "loading the model (/health answered 503)")
    if health.status not in (200, 404):  # 404: no /health (llama-cpp-python): ask /v1/models
        return Verdict(State.DOWN, f"/health answered {health.status}")
    if models is None or models.status is None:
        return Verdict(State.DOWN, f"/v1/models: {models.error if models else 'not probed'}",
                       timed_out=models is not None and models.timed_out)
    if models.status in (401, 403):
        return Verdict(State.MISCONFIGURED, f"the replica refused our API key ({models.status})")
    if models.status == 503:
        return Verdict(State.LOADING, "loading the model (/v1/models answered 503)")
    if models.status != 200:
        return Verdict(State.DOWN, f"/v1/models answered {models.status}")
    listed = models_listed(models.body)
    if not listed:
        return Verdict(State.LOADING, "no model listed yet")
    if model not in listed:
        return Verdict(State.MISCONFIGURED, f"serves {', '.join(listed)[:120]}, not {model}")
    said = read_metrics(metrics.body) if metrics and metrics.status == 200 else Reading()
    if said.waiting is not None and said.waiting > busy_waiting:
        return Verdict(State.BUSY, f"{said.waiting:g} requests waiting (threshold "
                       f"{busy_waiting})", waiting=said.waiting, cache_usage=said.cache_usage)
    return Verdict(State.UP, "serving " + model, waiting=said.waiting,
                   cache_usage=said.cache_usage)


def judge_path(result: HttpResult) -> Verdict:
    """The GPU box's nginx over the tailnet: any HTTP answer means the path works."""
    if result.status is None:
        return Verdict(State.DOWN, f"GPU box unreachable over the tailnet: {result.error}")
    return Verdict(State.UP, f"nginx answered {result.status}")


def describe_error(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection failed ({connect_failure(exc.os_error, exc.host, exc.port)})"
    return exc.__class__.__name__


async def get(session: aiohttp.ClientSession, url: str, timeout_s: float,
              headers: dict[str, str] | None = None, limit: int = 65536) -> HttpResult:
    """One GET, one attempt, bounded by `timeout_s` from connect to body."""
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                # read(n) returns what has arrived so far: gather pieces up to the limit.
                body = bytearray()
                while len(body) < limit and (piece := await resp.content.read(limit - len(body))):
                    body += piece
                return HttpResult(resp.status, body.decode("utf-8", "replace"))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return HttpResult(None, error=describe_error(exc, timeout_s),
                          timed_out=isinstance(exc, TimeoutError))


async def probe_replica(session: aiohttp.ClientSession, base_url: str, model: str,
                        api_key: str | None, timeout_s: float, busy_waiting: int) -> Verdict:
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    health, models, metrics = await asyncio.gather(
        get(session, f"{base_url}/health", timeout_s),
        get(session, f"{base_url}/v1/models", timeout_s, headers),
        get(session, f"{base_url}/metrics", timeout_s, headers, limit=1 << 20))
    v = judge_replica(health, models, metrics, model, busy_waiting)
    return replace(v, latency_ms=(time.perf_counter() - started) * 1000)


async def probe_path(session: aiohttp.ClientSession, url: str, timeout_s: float) -> Verdict:
    started = time.perf_counter()
    v = judge_path(await get(session, url, timeout_s))
    return Verdict(v.state, v.reason, (time.perf_counter() - started) * 1000, v.waiting)


def judge_openai(models: HttpResult, model: str) -> Verdict:
    """OpenAI from its model list: the key works and can use the configured model. Pure."""
    if models.status is None:
        return Verdict(State.DOWN, f"OpenAI unreachable: {models.error}")
    if models.status in (401, 403):
        return Verdict(State.MISCONFIGURED, f"OpenAI refused the API key ({models.status})")
    if models.status != 200:
        return Verdict(State.DOWN, f"OpenAI answered {models.status}")
    listed = models_listed(models.body)
    if listed is None:
        return Verdict(State.DOWN, "OpenAI sent a model list that is not JSON")
    if model not in listed:
        return Verdict(State.MISCONFIGURED, f"model {model} is not available to this key")
    return Verdict(State.UP, f"{model} available")


async def probe_openai(session: aiohttp.ClientSession, base_url: str, model: str,
                       api_key: str | None, timeout_s: float) -> Verdict:
    """OpenAI without spending tokens: list the models the key can use."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    v = judge_openai(await get(session, f"{base_url}/models", timeout_s, headers, limit=1 << 20),
                     model)
    return Verdict(v.state, v.reason, (time.perf_counter() - started) * 1000, v.waiting)
