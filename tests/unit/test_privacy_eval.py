"""The privacy rules and the redactor, measured on the labelled conversations in
tests/data/privacy_eval.jsonl (see make_privacy_eval.py for how they were written).

Per kind: precision, recall and support, where a labelled value counts as caught only when
every character of it is inside a redacted span of its kind. Per conversation: whether a
conversation with a money, credit or identity turn is kept on-site.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from gateway.config import load_settings
from gateway.language.intents import IntentClassifier
from gateway.security.pii import find
from tests.conftest import ROOT

DATA = Path(__file__).resolve().parents[1] / "data" / "privacy_eval.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text().splitlines()]
GOALS = {kind: (0.95, 0.97) for kind in ("PHONE", "EMAIL", "CARD", "SSN", "DOB", "ADDRESS")}
GOALS["NAME"] = (0.0, 0.90)   # recall only: no model, so precision is reported, not promised


def scores() -> dict[str, tuple[float, float, int]]:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])   # tp, fp, fn
    for row in ROWS:
        for turn in row["turns"]:
            text, found, used = turn["text"], find(turn["text"]), set()
            for kind, value in turn["entities"]:
                start = text.find(value)
                assert start >= 0, (value, text)
                mine = [i for i, f in enumerate(found) if f.kind == kind
                        and f.start < start + len(value) and start < f.end]
                used.update(mine)
                covered = all(any(found[i].start <= c < found[i].end for i in mine)
                              for c in range(start, start + len(value)) if not text[c].isspace())
                tally[kind][0 if mine and covered else 2] += 1
            for i, f in enumerate(found):
                if i not in used:
                    tally[f.kind][1] += 1
    return {k: (tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0, tp + fn)
            for k, (tp, fp, fn) in tally.items()}


def test_the_set_is_big_hard_and_mostly_conversations():
    messages = sum(len(r["turns"]) for r in ROWS)
    assert messages >= 800
    assert sum(len(r["turns"]) > 1 for r in ROWS) > len(ROWS) / 2
    texts = " ".join(t["text"] for r in ROWS for t in r["turns"])
    for hard in ("call me after 5", "my budget is", "stock STK-48213", "Route 66",
                 "five one two", "+52", "me llamo", "maria gonzalez", "Your dealership is at"):
        assert hard in texts, hard


def test_per_kind_precision_and_recall_meet_their_goals(capsys):
    table = scores()
    with capsys.disabled():
        print(f"\nPII on {sum(len(r['turns']) for r in ROWS)} messages "
              f"({len(ROWS)} conversations): kind precision recall support")
        for kind, (p, r, n) in sorted(table.items()):
            print(f"  {kind:13} {p:.3f} {r:.3f} {n}")
    for kind, (min_p, min_r) in GOALS.items():
        p, r, n = table[kind]
        assert n >= 10, f"{kind}: too few examples to measure"
        assert p >= min_p and r >= min_r, f"{kind}: precision {p:.3f}, recall {r:.3f}"


def test_private_conversations_stay_private_counted_per_conversation(capsys):
    settings = load_settings(ROOT / "config" / "scout.yaml", {
        "ONPREM_API_KEY": "a", "OPENAI_API_KEY": "b", "SCOUT_API_KEYS": "t:0123456789abcdef"})
    classifier = IntentClassifier(settings.intents.values(), settings.default_intent)
    tp = fn = fp = 0
    for row in ROWS:
        msgs = [{"role": "user", "content": t["text"]} for t in row["turns"]]
        kept = classifier.private_turn(msgs) is not None
        tp += row["private"] and kept
        fn += row["private"] and not kept
        fp += kept and not row["private"]
    recall = tp / (tp + fn)
    with capsys.disabled():
        print(f"\nprivate conversations: recall {recall:.3f} over {tp + fn}, "
              f"{fp} of {len(ROWS) - tp - fn} others kept on-site too")
    assert recall >= 0.98
