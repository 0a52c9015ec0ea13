"""What Prometheus multiprocess mode costs per answer, beside single-process mode, one run.

    python -m bench.metrics_cost [--turns 20000]

`serve --workers N` keeps every worker's metric values in files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), so a scrape can sum
them. This runs the gateway's own per-answer recorder (the counters, histograms and the
minute stats every answer updates) on the same answers in two fresh processes, one per
mode, and reports microseconds per answer for each and their difference, against the
goal of at most 0.1 ms added per request.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import report

GOAL_MS = 0.1


def _one(turns: int) -> float:
    """µs per answer in this process (its mode was fixed by the environment at import)."""
    from gateway.accounting import recorder
    from gateway.chat import Turn, TurnOutcome
    from gateway.config import load_settings
    from gateway.metrics import Metrics
    from gateway.providers.base import TierRequest
    from gateway.routing.plan import RoutePlan
    from gateway.state.kv import MemoryKV
    from gateway.stats import Stats

    settings = load_settings(os.path.join(os.path.dirname(__file__), "..", "config",
                                          "scout.yaml"),
                             {"SCOUT_API_KEYS": "bench:k", "ONPREM_API_KEY": "x",
                              "OPENAI_API_KEY": "y"})
    observe = recorder(settings, Metrics(), Stats(MemoryKV(), "bench"))
    intents = list(settings.intents.values())
    made = []
    for i in range(64):   # several intents, tiers and keys: the label sets a real day has
        intent = intents[i % len(intents)]
        plan = RoutePlan(intent, intent.ladder, intent.deadlines)
        tier = intent.ladder[i % len(intent.ladder)]
        turn = Turn(f"t{i}", plan, TierRequest(messages=[], intent=intent), intent.cacheable,
                    intent.cacheable, key_label=f"key{i % 3}")
        made.append((turn, TurnOutcome(
            f"t{i}", intent.name, [tier], ["m"], "x" * 200, 52.0, 160.0, 40, 60, 0.0001, None,
            "stop", True, race_ttft_ms=51.0, parts=[(tier, 40, 60, 0.0001)])))
    for turn, outcome in made:   # the first use of each label set creates its files
        observe(turn, outcome)
    t0 = time.perf_counter()
    for i in range(turns):
        turn, outcome = made[i % len(made)]
        observe(turn, outcome)
    return (time.perf_counter() - t0) / turns * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=20000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_one(args.turns)))
        return
    results: dict[str, list[float]] = {"single": [], "multiprocess": []}
    for _ in range(3):   # alternating, so the machine's drift hits both
        for mode in results:
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            with tempfile.TemporaryDirectory() as d:
                if mode == "multiprocess":
                    env["PROMETHEUS_MULTIPROC_DIR"] = d
                out = subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child",
                                      "--turns", str(args.turns)], env=env, check=True,
                                     capture_output=True, text=True).stdout
            results[mode].append(json.loads(out.strip().splitlines()[-1]))
    single, multi = min(results["single"]), min(results["multiprocess"])
    added_ms = (multi - single) / 1000
    rows = [[mode, *(f"{v:.1f}" for v in vals), f"{min(vals):.1f}"]
            for mode, vals in results.items()]
    rows.append(["added by multiprocess mode", "", "", "", f"{multi - single:.1f} µs "
                 f"({added_ms:.4f} ms; goal ≤ {GOAL_MS} ms: "
                 f"{'met' if added_ms <= GOAL_MS else 'missed'})"])
    report.write("metrics_cost", {"us_per_answer": results, "added_ms": added_ms,
                                  "goal_ms": GOAL_MS}, rows,
                 ["mode", "run 1 µs", "run 2 µs", "run 3 µs", "best µs per answer"],
                 note="The gateway's per-answer recorder (metrics and minute stats), "
                      f"{args.turns} answers per run, each mode in a fresh process.")


if __name__ == "__main__":
    main()
