"""Scenario 4: gateway memory per idle authenticated WebSocket, up to 5,000 on one process.

    python -m bench.ws_memory [--sockets 5000]

One gateway process (pinned to core 0) with the in-process store; the client,
on the other core, opens authenticated sockets (API key header), waits for each
hello, and leaves them idle. The gateway's RSS is read from /proc before and
after; the difference divided by the sockets is the cost of one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource

import aiohttp

from bench import procs, report


async def open_sockets(session: aiohttp.ClientSession, url: str, n: int,
                       out: list[aiohttp.ClientWebSocketResponse]) -> None:
    sem = asyncio.Semaphore(200)

    async def one() -> None:
        async with sem:
            ws = await session.ws_connect(url, headers=procs.API_HEADERS, heartbeat=None)
            assert (await ws.receive_json())["type"] == "hello"
            out.append(ws)

    await asyncio.gather(*(one() for _ in range(n)))


async def run(counts: list[int]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it
    sim = procs.simulator(core=1, api_key=procs.KEYS["ONPREM_API_KEY"])
    gw = procs.gateway([sim.url], None, core=0)
    rows, data = [], {}
    try:
        url = f"{gw.url}/ws/chat"
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as session:
            warm: list[aiohttp.ClientWebSocketResponse] = []
            await open_sockets(session, url, 20, warm)  # first-use allocations out of the way
            await asyncio.sleep(1)
            base = gw.rss_bytes()
            held: list[aiohttp.ClientWebSocketResponse] = []
            for n in counts:
                await open_sockets(session, url, n - len(held), held)
                await asyncio.sleep(2)
                gc.collect()
                rss = gw.rss_bytes()
                per = (rss - base) / n
                data[str(n)] = {"rss_mib": rss / 2**20, "added_mib": (rss - base) / 2**20,
                                "per_socket_kib": per / 1024}
                rows.append([n, rss / 2**20, (rss - base) / 2**20, per / 1024])
                print(f"{n} sockets: gateway RSS {rss / 2**20:.1f} MiB, {per / 1024:.1f} KiB each")
            for ws in held + warm:
                await ws.close()
    finally:
        gw.stop()
        sim.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    report.write("ws_memory", {"results": data}, rows,
                 ["idle sockets", "gateway RSS MiB", "added MiB", "KiB per socket"],
                 note="Goal: ≤ 30 KiB per idle authenticated socket; 5,000 sockets on one "
                      "process under 200 MiB of gateway memory in all.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=5000)
    n = ap.parse_args().sockets
    asyncio.run(run(sorted({min(1000, n), n})))


if __name__ == "__main__":
    main()
