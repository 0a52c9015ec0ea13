"""An async load tool: OpenAI streaming requests, timed per request.

    python -m bench.load URL --concurrency 32 --requests 640 [--model scout] [--key KEY]

For each request: time to first token, total time, chunks, error. Summaries:
p50/p90/p99/max and requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench import report

QUESTION = "Which hybrid SUV would you recommend for a family of five?"


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    # Per request, for timelines: (start s since the run began, TTFT s or None, first model).
    records: list[tuple[float, float | None, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict[str, Any]:
        n = len(self.total)
        return {"requests": n + self.errors, "ok": n, "errors": self.errors,
                "error_kinds": self.error_kinds, "ttft_ms": report.summary_ms(self.ttft),
                "total_ms": report.summary_ms(self.total), "chunks": self.chunks,
                "rps": n / self.wall_s if self.wall_s else 0.0}


async def one(session: aiohttp.ClientSession, url: str, body: bytes, res: Result) -> None:
    t0 = time.perf_counter()
    first = None
    chunks = 0
    model = ""
    try:
        async with session.post(url, data=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            buf = b""
            served = ""
            done = False
            async for data in resp.content.iter_any():
                buf += data
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    if event.startswith(b"data: {") and b'"content"' in event:
                        chunks += 1
                        if first is None and b'"content":""' not in event:
                            first = time.perf_counter()
                            model = orjson.loads(event[6:]).get("model", "")
                    elif event.startswith(b'data: {"error"'):
                        raise RuntimeError("error event")
                    elif b'"served_by"' in event:   # the gateway's last chunk: who answered
                        served = "+".join(orjson.loads(event[6:]).get("served_by") or [])
                    elif event == b"data: [DONE]":
                        done = True
        if first is None:
            raise RuntimeError("no token")
        if not done:
            raise RuntimeError("cut short: no [DONE]")
        res.records.append((t0 - res.t0, first - t0, served or model))
        res.ttft.append(first - t0)
        res.total.append(time.perf_counter() - t0)
        res.chunks += chunks
    except Exception as exc:  # counted, not raised: a load run reports its errors
        res.records.append((t0 - res.t0, None, ""))
        res.errors += 1
        kind = str(exc)[:60] or exc.__class__.__name__
        res.error_kinds[kind] = res.error_kinds.get(kind, 0) + 1


async def run_load(url: str, concurrency: int, requests: int, model: str = "scout",
                   headers: dict[str, str] | None = None, question: str = QUESTION,
                   vary: bool = False, seconds: float | None = None) -> Result:
    """`requests` requests by `concurrency` clients; with `seconds`, stop starting new ones
    after that long (for timelines, where a fault is injected mid-run)."""
    res = Result()
    nonce = uuid.uuid4().hex[:8]  # unique questions per run: never a cache hit
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            if seconds is not None and time.perf_counter() - res.t0 > seconds:
                return
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            q = f"{question} (run {nonce}, #{i})" if vary else question
            body = orjson.dumps({"model": model, "stream": True,
                                 "messages": [{"role": "user", "content": q}]})
            await one(session, url, body, res)

    async with aiohttp.ClientSession(connector=conn, timeout=timeout,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})}) as session:
        res.t0 = t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        res.wall_s = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--model", default="scout")
    ap.add_argument("--key")
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else None
    res = asyncio.run(run_load(args.url, args.concurrency, args.requests, args.model, headers))
    print(orjson.dumps(res.summary(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
