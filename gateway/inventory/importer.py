"""`scout-gateway inventory import FILE.csv`: load or update the stock from a DMS export.

Idempotent by stock number: a row that is already there as it is changes nothing; a row
that differs updates it. Each row is checked and refused with its reason — a bad price, a
VIN that fails its check digit, an unknown status, a missing column — and the rest go in.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import InventoryConfig
from gateway.inventory.store import COLUMNS, STATUSES, Backend, PostgresStore, SQLiteStore, Vehicle
from gateway.vin import valid as vin_valid


@dataclass
class ImportReport:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # line, stock, reason

    def lines(self) -> list[str]:
        out = [f"added {self.added}, changed {self.changed}, unchanged {self.unchanged}, "
               f"refused {len(self.refused)}"]
        out += [f"  line {line} ({stock or 'no stock number'}): {why}"
                for line, stock, why in self.refused]
        return out


def _int(value: str, what: str, low: int, high: int) -> int:
    try:
        number = int(float(value.replace(",", "").replace("$", "").strip()))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not low <= number <= high:
        raise ValueError(f"{what} {number} is out of range ({low}-{high})")
    return number


def parse_row(raw: dict[str, str]) -> Vehicle:
    """One CSV row as a Vehicle, or ValueError with the reason in words."""
    missing = [c for c in COLUMNS if c != "updated_at" and not (raw.get(c) or "").strip()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    vin = raw["vin"].strip().upper()
    if not vin_valid(vin):
        raise ValueError(f"VIN {vin} fails its check digit (or is not 17 valid characters)")
    status = raw["status"].strip().lower()
    if status not in STATUSES:
        raise ValueError(f"unknown status {raw['status']!r} (known: {', '.join(STATUSES)})")
    price = _int(raw["price"], "price", 1, 1_000_000)
    updated = (raw.get("updated_at") or "").strip() or \
        datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        datetime.datetime.fromisoformat(updated.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"updated_at {updated!r} is not an ISO date and time") from None
    return Vehicle(
        stock_number=raw["stock_number"].strip(), vin=vin,
        year=_int(raw["year"], "year", 1980, datetime.date.today().year + 2),
        make=raw["make"].strip(), model=raw["model"].strip(), trim=raw["trim"].strip(),
        body_style=raw["body_style"].strip(), fuel=raw["fuel"].strip().lower(),
        drivetrain=raw["drivetrain"].strip(), exterior_color=raw["exterior_color"].strip(),
        mileage=_int(raw["mileage"], "mileage", 0, 2_000_000), price=price, status=status,
        updated_at=updated)


async def import_csv(store: Backend, text: str) -> ImportReport:
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    if missing := [c for c in COLUMNS if c not in header and c != "updated_at"]:
        report.refused.append((1, "", f"the header lacks {', '.join(missing)}"))
        return report
    good: dict[str, Vehicle] = {}
    for line, raw in enumerate(reader, start=2):
        try:
            v = parse_row(raw)
        except ValueError as exc:
            report.refused.append((line, (raw.get("stock_number") or "").strip(), str(exc)))
            continue
        good[v.stock_number] = v
    existing = await store.get(list(good))
    changed = []
    for stock, v in good.items():
        before = existing.get(stock)
        if before is None:
            report.added += 1
        elif before == v:
            report.unchanged += 1
            continue
        else:
            report.changed += 1
        changed.append(v)
    if changed:
        await store.upsert(changed)
    return report


async def open_store(cfg: InventoryConfig) -> Backend:
    """PostgreSQL when a DSN is set, else SQLite (a file, or memory); seeded from the CSV
    when empty, so a new user needs nothing."""
    store: Backend
    if cfg.dsn is not None:
        store = await PostgresStore.connect(cfg.dsn.get())
    else:
        store = SQLiteStore(cfg.sqlite_path or ":memory:")
    if cfg.seed_csv and (await store.stats()).rows == 0:
        await import_csv(store, await asyncio.to_thread(Path(cfg.seed_csv).read_text))
    return store
