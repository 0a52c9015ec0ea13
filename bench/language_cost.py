"""What the language judgements cost a turn and a process: classify (rules, then the
privacy model), redact, and read the turn as a stock question (names, typos, amounts),
p50/p99 over the shared and own texts, against rules and redaction alone, in one run; the
resident memory the model adds; and how long `scout-gateway serve` takes to listen.

    python -m bench.language_cost
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.language import OWN, SHARED, load, settings


def texts() -> list[str]:
    out: list[str] = []
    for path in (SHARED / "privacy_topics.jsonl", OWN / "privacy_own.jsonl"):
        if path.exists():
            out += [t for row in load(path) for t in row["turns"]]
    if (SHARED / "pii_spans.jsonl").exists():
        out += [row["text"] for row in load(SHARED / "pii_spans.jsonl")]
    return out


def tag(n: int) -> str:
    """A word of letters unique to `n`: it makes every text new without adding digits,
    which would send every turn through the phone-number matcher."""
    letters = ""
    while True:
        n, r = divmod(n, 26)
        letters += "abcdefghijklmnopqrstuvwxyz"[r]
        if n == 0:
            return "zq" + letters


def per_turn_ms(steps, sample: list[str], rounds: int = 5) -> list[float]:
    times = []
    counter = 0
    for _ in range(rounds):
        for text in sample:
            unique = f"{text} {tag(counter)}"   # never a remembered text
            counter += 1
            t0 = time.perf_counter()
            for step in steps:
                step(unique)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def stock_reader():
    """extract_one on the shipped sample lot's vocabulary, compiled once as the tier does."""
    import csv
    from functools import partial

    from gateway.inventory.extract import extract_one, matchers
    lot = Path(__file__).resolve().parents[1] / "gateway" / "data" / "inventory.csv"
    rows = list(csv.DictReader(lot.read_text().splitlines()))
    vocab = {c: sorted({r[c] for r in rows})
             for c in ("make", "model", "body_style", "fuel", "exterior_color")}
    return partial(extract_one, vocabulary=vocab, compiled=matchers(vocab))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> int:
    from gateway.language.intents import IntentClassifier
    from gateway.security.pii import Redactor
    cfg = settings()
    sample = texts()
    rules = IntentClassifier(cfg.intents.values(), cfg.default_intent)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full = IntentClassifier.for_settings(cfg)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = per_turn_ms((rules.classify, Redactor().redact), sample)
    head = per_turn_ms((full.classify, Redactor().redact, stock_reader()), sample)
    t0 = time.perf_counter()
    cfg_file = Path(__file__).resolve().parents[1] / "config" / "scout.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(cfg_file), "--port", "18931"],
        env={"ONPREM_API_KEY": "x", "OPENAI_API_KEY": "y", "SCOUT_API_KEYS": "b:bench-key-00000000",
             "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import urllib.request
    while True:
        try:
            urllib.request.urlopen("http://127.0.0.1:18931/livez", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                print(proc.stdout.read() if proc.stdout else "", file=sys.stderr)
                return 1
            time.sleep(0.05)
    start_s = time.perf_counter() - t0
    proc.terminate()
    proc.wait()
    figures = {"turns": len(head), "rules_only_ms": {"p50": pct(base, 50), "p99": pct(base, 99)},
               "with_model_and_stock_ms": {"p50": pct(head, 50), "p99": pct(head, 99)},
               "model_rss_mb": round(after - before, 1), "serve_listens_s": round(start_s, 2)}
    figures["added_p99_ms"] = round(figures["with_model_and_stock_ms"]["p99"]
                                    - figures["rules_only_ms"]["p99"], 3)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
