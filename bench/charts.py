"""PNG charts from the JSON results: added TTFT vs concurrency, and TTFT during failover.

    python -m bench.charts      # reads bench/results/{overhead,failover}.json
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import RESULTS


def overhead() -> None:
    data = json.loads((RESULTS / "overhead.json").read_text())
    levels = sorted(data["levels"], key=int)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for path, color in (("gateway", "tab:blue"), ("relay", "tab:orange"), ("nginx", "tab:gray")):
        for p, style in (("p50", "-o"), ("p99", "--s")):
            added = [data["levels"][c][path]["ttft_ms"][p] - data["levels"][c]["direct"]["ttft_ms"][p]
                     for c in levels]
            ax.plot([int(c) for c in levels], added, style, color=color, label=f"{path} {p}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("symlog", linthresh=1)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("concurrent streaming clients")
    ax.set_ylabel("added time to first token, ms (vs. upstream alone)")
    ax.set_title("What the proxy adds to TTFT (one process / one worker on one core)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "overhead.png", dpi=110)


def failover() -> None:
    data = json.loads((RESULTS / "failover.json").read_text())
    scenarios = data["scenarios"]
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(8, 2.4 * len(scenarios)), sharex=True)
    for ax, s in zip(axes if len(scenarios) > 1 else [axes], scenarios, strict=True):
        by_model: dict[str, tuple[list[float], list[float]]] = {}
        for start, ttft, model in s["records"]:
            xs, ys = by_model.setdefault(model or "error", ([], []))
            xs.append(start)
            ys.append(ttft * 1000 if ttft is not None else 0)
        for model, (xs, ys) in sorted(by_model.items()):
            ax.scatter(xs, ys, s=4, label=model)
        ax.axvline(s["fault_at_s"], color="red", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylabel("TTFT ms")
        ax.set_title(f"{s['scenario']} at concurrency {s['concurrency']}: "
                     f"{s['errors']} errors, {s['waited_for_deadline']} waited for the deadline",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper right", markerscale=3)
    axes[-1].set_xlabel("request start, s (red line: the fault)")
    fig.tight_layout()
    fig.savefig(RESULTS / "failover.png", dpi=110)


def main() -> None:
    overhead()
    failover()
    print(f"wrote {RESULTS / 'overhead.png'} and {RESULTS / 'failover.png'}")


if __name__ == "__main__":
    main()
