"""Scores the gateway's language judgements on labelled sets, through its own classes.

    python -m bench.language                       # the shared set and the project's own
    python -m bench.language --eval ../shared/eval --json out.json
    python -m bench.language --misses              # also the id of every miss

Three judgements, each on the set for it (the file formats are `../shared/eval/README.md`'s):

- **privacy**: is a conversation private (its user turns, in order, through the intent
  classifier's `private_turn`: the keyword rules, then the similarity model)? Recall on
  the private conversations, and the false-positive rate on the others, single- and
  multi-turn; "kept on-site" also counts conversations the shipped config keeps on-site
  because their last turn's intent may not leave (`offsite: never`).
- **pii**: `Redactor.redact` on each message. Recall per type (the value no longer appears
  verbatim), typed precision per type (a span found overlaps a gold value of that type),
  and the share of look-alikes (`keep`) left unchanged.
- **inventory**: the inventory tier's own answer to each stock question, from the shipped
  sample CSV. Exact when the vehicles it lists are the expected ones; past the result cap,
  when it lists that many and all are expected. Also whether the question's intent can
  reach the inventory tier at all.

The project's own sets (`tests/data/`) are scored the same way where they exist. Nothing
here feeds the rules: the shared files measure how the rules generalise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "eval"
OWN = ROOT / "tests" / "data"
CSV = ROOT / "gateway" / "data" / "inventory.csv"


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def settings() -> Any:
    import yaml

    from gateway.config import settings_from_dict
    data = yaml.safe_load((ROOT / "config" / "scout.yaml").read_text())
    data["inventory"]["seed_csv"] = str(CSV)
    return settings_from_dict(data, {"SCOUT_API_KEYS": "bench:bench-key-0000000000",
                                     "ONPREM_API_KEY": "unused", "OPENAI_API_KEY": "unused"})


# --- privacy ---------------------------------------------------------------------------

def score_privacy(rows: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    from gateway.language.intents import IntentClassifier
    classifier = IntentClassifier.for_settings(cfg)
    out: dict[str, Any] = {"support": Counter(), "private": Counter(), "onsite": Counter(),
                           "misses": [], "false_positives": []}
    for row in rows:
        turns = [{"role": "user", "content": t} for t in row["turns"]]
        shape = "single" if len(turns) == 1 else "multi"
        label = "private" if row["private"] else "public"
        found = classifier.private_turn(turns) is not None
        last = classifier.classify(row["turns"][-1])
        onsite = found or last.offsite == "never"
        key = (label, shape)
        out["support"][key] += 1
        out["private"][key] += found
        out["onsite"][key] += onsite
        if row["private"] and not found:
            out["misses"].append(row["id"])
        if not row["private"] and found:
            out["false_positives"].append(row["id"])

    def share(counter: Counter, label: str, shape: str | None = None) -> tuple[int, int]:
        keys = [(label, s) for s in ("single", "multi") if shape in (None, s)]
        return sum(counter[k] for k in keys), sum(out["support"][k] for k in keys)

    figures = {}
    for shape in (None, "single", "multi"):
        name = shape or "all"
        figures[name] = {"recall": share(out["private"], "private", shape),
                         "false_positives": share(out["private"], "public", shape),
                         "kept_onsite_private": share(out["onsite"], "private", shape),
                         "kept_onsite_public": share(out["onsite"], "public", shape)}
    return {"figures": figures, "misses": out["misses"],
            "false_positives": out["false_positives"]}


# --- personal data ---------------------------------------------------------------------

KIND_OF = {"name": "NAME", "phone": "PHONE", "email": "EMAIL", "address": "ADDRESS",
           "ssn": "SSN", "dob": "DOB", "card": "CARD", "bank_account": "BANK_ACCOUNT",
           "routing": "ROUTING", "dl": "DL", "plate": "PLATE", "vin": "VIN"}


def score_pii(rows: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    from gateway.security.pii import Redactor, find, phone_digits
    ours = frozenset(phone_digits(p) for p in cfg.privacy.business_phones)
    support: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    found_n: Counter[str] = Counter()
    found_ok: Counter[str] = Counter()
    misses: dict[str, list[str]] = defaultdict(list)
    keep_total = keep_ok = 0
    damaged: list[str] = []
    for row in rows:
        text = row["text"]
        redacted = Redactor(keep_phones=ours).redact(text)
        gold = [(KIND_OF[p["type"]], p["value"]) for p in row.get("pii", [])]
        for kind, value in gold:
            support[kind] += 1
            if value not in redacted:
                caught[kind] += 1
            else:
                misses[kind].append(row["id"])
        spans = []
        for kind, value in gold:
            at = text.find(value)
            if at >= 0:
                spans.append((kind, at, at + len(value)))
        for f in find(text):
            if f.kind == "PHONE" and phone_digits(f.value) in ours:
                continue
            found_n[f.kind] += 1
            if any(k == f.kind and f.start < e and s < f.end for k, s, e in spans):
                found_ok[f.kind] += 1
        for keep in row.get("keep", []):
            keep_total += 1
            if keep in redacted:
                keep_ok += 1
            else:
                damaged.append(f"{row['id']}:{keep}")
    per_type = {kind: {"recall": (caught[kind], support[kind]),
                       "precision": (found_ok[kind], found_n[kind])}
                for kind in sorted(set(support) | set(found_n))}
    return {"per_type": per_type, "keep": (keep_ok, keep_total), "damaged": damaged,
            "misses": dict(misses)}


# --- stock questions -------------------------------------------------------------------

async def score_inventory(rows: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    from gateway.health.states import TierHealth
    from gateway.inventory.tier import open_inventory
    from gateway.language.intents import IntentClassifier
    from gateway.routing.plan import plan_route

    def healthy(tier: str) -> TierHealth:
        return TierHealth("up")
    classifier = IntentClassifier.for_settings(cfg)
    inventory = await open_inventory(cfg.inventory)
    cap = cfg.inventory.max_results
    exact, reach = 0, 0
    misses = []
    try:
        for row in rows:
            messages = [{"role": "user", "content": row["q"]}]
            vehicles, exact_match = await inventory.matches(messages)
            listed = [v.stock_number for v in vehicles] if exact_match else []
            expect = set(row["expect"])
            ok = (set(listed) == expect) if len(expect) <= cap else \
                (len(listed) == cap and set(listed) <= expect)
            exact += ok
            intent = classifier.classify(row["q"])
            plan = plan_route(intent, enabled=tuple(cfg.enabled_tiers()), health=healthy,
                              stock_tier="inventory" if inventory.is_stock_question(messages)
                              else None)
            reaches = "inventory" in plan.ladder
            reach += reaches
            if not ok:
                misses.append(f"{row['id']} (listed {sorted(listed)}, expected "
                              f"{sorted(expect)}, intent {intent.name})")
    finally:
        await inventory.store.close()
    return {"exact": (exact, len(rows)), "reach_inventory": (reach, len(rows)),
            "misses": misses}


# --- report ----------------------------------------------------------------------------

def ratio(pair: tuple[int, int]) -> str:
    n, d = pair
    return f"{n / d:.3f} ({n}/{d})" if d else "n/a (0/0)"


def report(name: str, result: dict[str, Any], misses: bool) -> list[str]:
    lines = [f"## {name}"]
    if "privacy" in result:
        p = result["privacy"]
        lines.append("privacy          recall              false-positive rate   "
                     "kept on-site (private / not)")
        for shape, f in p["figures"].items():
            lines.append(f"  {shape:<14} {ratio(f['recall']):<19} {ratio(f['false_positives']):<21} "
                         f"{ratio(f['kept_onsite_private'])} / {ratio(f['kept_onsite_public'])}")
        if misses:
            lines.append(f"  missed: {' '.join(p['misses']) or '-'}")
            lines.append(f"  false positives: {' '.join(p['false_positives']) or '-'}")
    if "pii" in result:
        p = result["pii"]
        lines.append("personal data    recall              precision (typed)     support")
        for kind, f in p["per_type"].items():
            lines.append(f"  {kind:<14} {ratio(f['recall']):<19} {ratio(f['precision']):<21} "
                         f"{f['recall'][1]}")
        lines.append(f"  look-alikes unchanged: {ratio(p['keep'])}")
        if misses:
            for kind, ids in p["misses"].items():
                lines.append(f"  missed {kind}: {' '.join(ids)}")
            lines.append(f"  damaged look-alikes: {' '.join(p['damaged']) or '-'}")
    if "inventory" in result:
        p = result["inventory"]
        lines.append(f"stock questions  exact {ratio(p['exact'])}; can reach the inventory "
                     f"tier {ratio(p['reach_inventory'])}")
        if misses:
            lines += [f"  {m}" for m in p["misses"]]
    return lines


async def evaluate(folder: Path, own: bool) -> dict[str, Any]:
    cfg = settings()
    result: dict[str, Any] = {}
    files = {"privacy": "privacy_topics.jsonl", "pii": "pii_spans.jsonl",
             "inventory": "inventory_questions.jsonl"}
    if own:
        files = {"privacy": "privacy_own.jsonl", "pii": "pii_own.jsonl",
                 "inventory": "inventory_own.jsonl"}
    paths = {k: folder / v for k, v in files.items() if (folder / v).exists()}
    if "privacy" in paths:
        result["privacy"] = score_privacy(load(paths["privacy"]), cfg)
    if "pii" in paths:
        result["pii"] = score_pii(load(paths["pii"]), cfg)
    if "inventory" in paths:
        result["inventory"] = await score_inventory(load(paths["inventory"]), cfg)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval", type=Path, default=SHARED, help="the shared labelled sets")
    ap.add_argument("--own", type=Path, default=OWN, help="the project's own labelled sets")
    ap.add_argument("--misses", action="store_true", help="list the id of every miss")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args(argv)
    results = {}
    for name, folder, own in (("shared set", args.eval, False), ("own set", args.own, True)):
        if folder.exists():
            results[name] = asyncio.run(evaluate(folder, own))
            print("\n".join(report(f"{name} ({folder})", results[name], args.misses)))
            print()
    if not results:
        print(f"no labelled sets found at {args.eval} or {args.own}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
