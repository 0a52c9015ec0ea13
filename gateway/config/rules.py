"""Rules on the file as written, before its fields are validated: names that moved, each
intent's name and deadlines, and the rules across settings (a private intent with an
off-site tier in its ladder, a model without a price). On the raw mapping, so they are
listed even when a field elsewhere is wrong; defaults are read from the models' fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.base import OFFSITE_POLICIES, Deadlines, Loading, default_offsite

# Settings that moved to the section that uses them: (old section, key) → (new section, key).
# The old name is read, with a warning, for one release.
MOVED = {("server", "passive_health_ttl_s"): ("health", "eject_ttl_s"),
         ("websocket", "max_buffered_bytes"): ("server", "max_buffered_bytes")}


def deadline_rules(where: str, raw: Mapping[str, Any], problems: list[str]) -> None:
    """Deadlines that can't work together, on the values as written (beside a bad field)."""
    d = {k: raw.get(k, f.default) for k, f in Deadlines.model_fields.items()}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in d.values()):
        return
    if d["headers_s"] > d["first_token_s"]:
        problems.append(f"{where}: headers_s ({d['headers_s']:g}) cannot be longer than "
                        f"first_token_s ({d['first_token_s']:g}): no token can arrive before "
                        "the headers")
    for key, value in d.items():
        if value > 600:
            problems.append(f"{where}.{key}: {value:g} s is longer than any client waits "
                            "(max 600)")


def intent_rules(name: str, raw: Mapping[str, Any], offsite_tiers: frozenset[str],
                  problems: list[str]) -> None:
    """The rules between an intent's own fields, on the values as written."""
    where = f"intents.{name}"
    private = raw.get("private") is True
    offsite = raw.get("offsite") or default_offsite(private)
    ladder = raw.get("ladder")
    ladder = set(map(str, ladder)) if isinstance(ladder, list | tuple) else set()
    if private and offsite != "never" and offsite in OFFSITE_POLICIES:
        problems.append(f"{where}: is private, so offsite must be never (got {offsite})")
    if offsite == "never" and offsite_tiers & ladder:
        why = "is private" if private else "has offsite: never"
        problems.append(f"{where}: {why}, so its ladder must not contain "
                        f"{', '.join(sorted(offsite_tiers & ladder))}")
    if private and raw.get("cacheable") is True:
        problems.append(f"{where}: is private, so it cannot be cacheable")


def as_written(data: Any, loading: Loading) -> Any:
    """Moved names, intent names and deadlines, and the rules across sections, on the
    file as written: they are listed even when some field elsewhere is wrong."""
    if not isinstance(data, Mapping):
        return data
    data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for (old, old_key), (new, new_key) in MOVED.items():
        before = data.get(old)
        if not isinstance(before, dict) or old_key not in before:
            continue
        value = before.pop(old_key)
        after = data.setdefault(new, {})
        if not isinstance(after, dict):
            continue
        if new_key in after:
            loading.problems.append(f"{old}.{old_key}: moved to {new}.{new_key}, which "
                                    "is also set; keep only that")
            continue
        loading.warnings.append(f"{old}.{old_key} is now {new}.{new_key}; the old name "
                                "is read until the next release")
        after[new_key] = value
    base = data.get("deadlines") if isinstance(data.get("deadlines"), dict) else {}
    deadline_rules("deadlines", base, loading.problems)
    intents = data.get("intents")
    if isinstance(intents, dict):
        for name, raw in list(intents.items()):
            if not isinstance(raw, Mapping):
                continue
            own = raw.get("deadlines")
            raw = {**raw, "name": str(name)}
            if own is None or isinstance(own, Mapping):
                raw["deadlines"] = {**base, **(own or {})}
                if own:
                    deadline_rules(f"intents.{name}.deadlines", raw["deadlines"],
                                    loading.problems)
            intents[name] = raw
            intent_rules(str(name), raw, loading.offsite_tiers, loading.problems)
    default_intent = data.get("default_intent", "default")
    if isinstance(intents, dict) and default_intent not in intents:
        loading.problems.append(f"default_intent: {default_intent!r} is not among the "
                                "intents")
    prices = data.get("prices") if isinstance(data.get("prices"), Mapping) else {}
    for name, config in loading.sections:
        section = data.get(name) if isinstance(data.get(name), Mapping) else {}
        if section.get("enabled", config.model_fields["enabled"].default) is False:
            users = sorted(str(n) for n, i in (intents or {}).items()
                           if isinstance(i, Mapping) and name in (i.get("ladder") or ()))
            if users:
                loading.warnings.append(f"tier {name} is disabled and is skipped in "
                                        f"the ladders of {', '.join(users)}")
            continue
        model = section.get("model", config.model_fields["model"].default)
        if isinstance(model, str) and model not in prices:
            loading.problems.append(f"{name}.model: {model!r} has no entry under "
                                    "prices (on-prem may be 0)")
    return data
