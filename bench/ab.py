"""A/B: this checkout's gateway against another commit's, same load, alternating, one run.

    python -m bench.ab --base HEAD~1 [--concurrency 32] [--requests 1500] [--rounds 3]
                       [--head-env NAME=VALUE ...]

The baseline runs from a temporary `git worktree` of `--base`. Both gateways sit on
core 0 (only the one under load is busy), the simulator (50 ms to first token, 20
chunks 5 ms apart) and the load tool on core 1. Rounds alternate base, head, base,
head… so drift on a noisy machine hits both. Reported: per round TTFT p50/p99, req/s
and gateway CPU per request; then the medians and head ÷ base.

`--head-env` sets a variable for the head gateway only: `--base HEAD --head-env
PROMETHEUS_MULTIPROC_DIR=$(mktemp -d)` measures what multiprocess metrics (as `serve
--workers N` runs them) cost one process, beside the same code without them.

`--head-python` runs the head gateway on another interpreter (with this project's
dependencies installed): `--base HEAD --head-python /opt/py313/bin/python` measures what
a Python upgrade buys the same code. `--base-python` does the same for the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import procs, report
from bench.overhead import measure

FAST = {"ttft": 0.05, "interval": 0.005, "tokens": 20}


def worktree(ref: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="scout-ab-"))
    subprocess.run(["git", "-C", str(procs.ROOT), "worktree", "add", "--detach", "-q",
                    str(where), ref], check=True)
    return where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the commit to compare against")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--head-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the head gateway only")
    ap.add_argument("--head-python", metavar="PATH",
                    help="the interpreter the head gateway runs on (default: this one)")
    ap.add_argument("--base-python", metavar="PATH",
                    help="the interpreter the base gateway runs on (default: this one)")
    args = ap.parse_args()
    head_env = dict(v.split("=", 1) for v in args.head_env)
    version = {side: subprocess.run(
        [python or sys.executable, "-c", "import platform; print(platform.python_version())"],
        check=True, capture_output=True, text=True).stdout.strip()
        for side, python in (("base", args.base_python), ("head", args.head_python))}
    base_sha = subprocess.run(["git", "-C", str(procs.ROOT), "rev-parse", "--short", args.base],
                              check=True, capture_output=True, text=True).stdout.strip()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    tree = worktree(args.base)
    deadlines: dict[str, float] = {"headers_s": 10, "first_token_s": 20, "gap_s": 10}
    started: list[procs.Proc] = []   # stopped in `finally` even if a later one fails to start
    rows, runs = [], []
    try:
        sim = procs.simulator(core=1, api_key=procs.KEYS["ONPREM_API_KEY"], **FAST)
        started.append(sim)
        gws = {"base": procs.gateway([sim.url], None, core=0, deadlines=deadlines, source=tree,
                                     python=args.base_python)}
        started.append(gws["base"])
        gws["head"] = procs.gateway([sim.url], None, core=0, deadlines=deadlines,
                                    extra_env=head_env, python=args.head_python)
        started.append(gws["head"])
        for rnd in range(args.rounds):
            for name, gw in gws.items():
                s = asyncio.run(measure(f"{gw.url}/v1/chat/completions", gw, args.concurrency,
                                        args.requests, "scout", procs.API_HEADERS, vary=True))
                cpu_ms = s["cpu_ms_per_request"]
                runs.append({"round": rnd, "version": name, **s})
                rows.append([rnd, name, s["ttft_ms"]["p50"], s["ttft_ms"]["p99"], s["rps"],
                             cpu_ms, s["errors"]])
                print(rows[-1], flush=True)
    finally:
        for p in reversed(started):
            p.stop()
        subprocess.run(["git", "-C", str(procs.ROOT), "worktree", "remove", "--force",
                        str(tree)], check=False)

    def med(version: str, key: str) -> float:
        return statistics.median(r[key] if key == "cpu_ms_per_request" else r["ttft_ms"][key]
                                 for r in runs if r["version"] == version)

    summary = {k: {"base": med("base", k), "head": med("head", k),
                   "ratio": med("head", k) / med("base", k)}
               for k in ("cpu_ms_per_request", "p50", "p99")}
    for k, v in summary.items():
        rows.append(["median", k, v["base"], v["head"], f"head ÷ base {v['ratio']:.3f}", "", ""])
    report.write("ab", {"base": base_sha, "concurrency": args.concurrency, "runs": runs,
                        "python": version,
                        "summary": summary}, rows,
                 ["round", "version", "TTFT p50 ms", "TTFT p99 ms", "req/s", "gateway CPU ms/req",
                  "errors"],
                 note=f"base = {base_sha} on Python {version['base']}, head = this checkout on "
                      f"Python {version['head']}"
                      f"{' with ' + ', '.join(args.head_env) if args.head_env else ''}; "
                      f"{args.concurrency} streams, "
                      f"{args.requests} requests a round; median rows: base, head, ratio.")


if __name__ == "__main__":
    main()
