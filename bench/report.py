"""Percentiles, and results written as JSON plus a Markdown table."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"p50": pct(ms, 50), "p90": pct(ms, 90), "p95": pct(ms, 95), "p99": pct(ms, 99),
            "max": max(ms) if ms else float("nan"), "n": len(ms)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}


def write(name: str, data: dict[str, Any], table: list[list[Any]], header: list[str],
          note: str = "") -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"scenario": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
            **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    lines = [f"### {name}", "", f"Machine: {data['machine']['cpu']}, "
             f"{data['machine']['cores']} cores, Python {data['machine']['python']}", ""]
    if note:
        lines += [note, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        lines.append("| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c)
                                        for c in row) + " |")
    md = "\n".join(lines) + "\n"
    path = RESULTS / f"{name}.md"
    path.write_text(md)
    print(md)
    return path
