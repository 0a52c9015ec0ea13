"""The dealership's stock: SQLite by default, PostgreSQL for real deployments, one schema and
one set of queries for both.

SQLite (the standard library's, run in a worker thread) needs nothing: on first start the
file is created from the shipped CSV. PostgreSQL (`INVENTORY_DSN`) goes through asyncpg's
pool. The SQL differs only in its placeholders (`?` against `$1`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

COLUMNS = ("stock_number", "vin", "year", "make", "model", "trim", "body_style", "fuel",
           "drivetrain", "exterior_color", "mileage", "price", "status", "updated_at")
STATUSES = ("available", "pending", "sold")
SCHEMA = """CREATE TABLE IF NOT EXISTS vehicles (
    stock_number TEXT PRIMARY KEY,
    vin TEXT NOT NULL,
    year INTEGER NOT NULL,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    trim TEXT NOT NULL,
    body_style TEXT NOT NULL,
    fuel TEXT NOT NULL,
    drivetrain TEXT NOT NULL,
    exterior_color TEXT NOT NULL,
    mileage INTEGER NOT NULL,
    price INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL
)"""
# A counter every change to the vehicles bumps, whoever writes (this gateway, another one,
# the import command, the DMS itself): what the gateway has read stays good while it holds.
VERSION_TABLE = """CREATE TABLE IF NOT EXISTS stock_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
)"""
SQLITE_VERSION = [VERSION_TABLE, "INSERT OR IGNORE INTO stock_version VALUES (1, 0)", *(
    f"CREATE TRIGGER IF NOT EXISTS vehicles_{op.lower()} AFTER {op} ON vehicles "
    "BEGIN UPDATE stock_version SET n = n + 1 WHERE id = 1; END"
    for op in ("INSERT", "UPDATE", "DELETE"))]
POSTGRES_VERSION = [
    VERSION_TABLE, "INSERT INTO stock_version VALUES (1, 0) ON CONFLICT DO NOTHING",
    "CREATE OR REPLACE FUNCTION scout_stock_changed() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE stock_version SET n = n + 1 WHERE id = 1; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER vehicles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
    "ON vehicles FOR EACH STATEMENT EXECUTE FUNCTION scout_stock_changed()"]
VERSION_SQL = "SELECT n FROM stock_version WHERE id = 1"
# Gateways starting together create the schema one at a time (its key: any constant).
SCHEMA_LOCK = 726_173

NEW_MILES = 100   # a vehicle with fewer miles than this is sold as new


@dataclass(frozen=True)
class Filters:
    """What a customer asked for; every field optional."""

    makes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    body_styles: tuple[str, ...] = ()
    fuels: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()   # shades as the stock writes them, or colour words
    drivetrains: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    price_min: int | None = None
    price_max: int | None = None
    mileage_max: int | None = None
    condition: str | None = None   # "new" or "used"

    def empty(self) -> bool:
        return self == Filters()

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}


@dataclass(frozen=True)
class Vehicle:
    stock_number: str
    vin: str
    year: int
    make: str
    model: str
    trim: str
    body_style: str
    fuel: str
    drivetrain: str
    exterior_color: str
    mileage: int
    price: int
    status: str
    updated_at: str

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in COLUMNS)


@dataclass
class Stats:
    rows: int = 0
    available: int = 0
    updated_at: str | None = None   # the newest row's
    vocabulary: dict[str, list[str]] = field(default_factory=dict)


def where(f: Filters, ph: Any) -> tuple[str, list[Any]]:
    """The WHERE clause for `f` (available vehicles only) and its parameters; `ph(n)` writes
    the n-th placeholder in the backend's style."""
    parts, args = ["status = " + ph(1)], ["available"]

    def add(sql: str, *values: Any) -> None:
        marks = [ph(len(args) + i + 1) for i in range(len(values))]
        args.extend(values)
        parts.append(sql.format(*marks))

    for column, values in (("make", f.makes), ("model", f.models), ("body_style", f.body_styles),
                           ("fuel", f.fuels), ("drivetrain", f.drivetrains)):
        if values:
            add(f"lower({column}) IN ({', '.join('{' + str(i) + '}' for i in range(len(values)))})",
                *[v.lower() for v in values])
    if f.colors:   # a shade exactly, or a colour word as its family: "red" is "ruby red" too
        add("(" + " OR ".join(f"lower(exterior_color) = {{{2 * i}}} OR lower(exterior_color) "
                              f"LIKE {{{2 * i + 1}}}" for i in range(len(f.colors))) + ")",
            *[v for c in f.colors for v in (c.lower(), f"% {c.lower()}")])
    for sql, value in (("year >= {0}", f.year_min), ("year <= {0}", f.year_max),
                       ("price >= {0}", f.price_min), ("price <= {0}", f.price_max),
                       ("mileage <= {0}", f.mileage_max)):
        if value is not None:
            add(sql, value)
    if f.condition == "new":
        add("mileage < {0}", NEW_MILES)
    elif f.condition == "used":
        add("mileage >= {0}", NEW_MILES)
    return " AND ".join(parts), args


class Backend(Protocol):
    backend: str   # "sqlite" or "postgresql"

    async def search(self, f: Filters, limit: int) -> list[Vehicle]: ...
    async def get(self, stock_numbers: Sequence[str]) -> dict[str, Vehicle]: ...
    async def upsert(self, vehicles: Sequence[Vehicle]) -> None: ...
    async def stats(self) -> Stats: ...
    async def version(self) -> int: ...
    async def close(self) -> None: ...


def _vehicle(row: Sequence[Any]) -> Vehicle:
    return Vehicle(*row)


VOCABULARY_SQL = {col: f"SELECT DISTINCT {col} FROM vehicles" for col in
                  ("make", "model", "body_style", "fuel", "exterior_color", "trim")}


class SQLiteStore:
    """The standard library's sqlite3, one connection, used from a worker thread."""

    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        with self._db:
            for sql in (SCHEMA, *SQLITE_VERSION):
                self._db.execute(sql)
        self._lock = asyncio.Lock()

    async def _run(self, fn: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(fn)

    async def search(self, f: Filters, limit: int) -> list[Vehicle]:
        clause, args = where(f, lambda n: "?")
        sql = f"SELECT {', '.join(COLUMNS)} FROM vehicles WHERE {clause} ORDER BY price LIMIT ?"
        rows = await self._run(lambda: self._db.execute(sql, [*args, limit]).fetchall())
        return [_vehicle(r) for r in rows]

    async def get(self, stock_numbers: Sequence[str]) -> dict[str, Vehicle]:
        if not stock_numbers:
            return {}
        sql = (f"SELECT {', '.join(COLUMNS)} FROM vehicles WHERE stock_number IN "
               f"({', '.join('?' for _ in stock_numbers)})")
        rows = await self._run(lambda: self._db.execute(sql, list(stock_numbers)).fetchall())
        return {r[0]: _vehicle(r) for r in rows}

    async def upsert(self, vehicles: Sequence[Vehicle]) -> None:
        sql = (f"INSERT INTO vehicles ({', '.join(COLUMNS)}) VALUES "
               f"({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (stock_number) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:]))

        def write() -> None:
            with self._db:
                self._db.executemany(sql, [v.row() for v in vehicles])
        await self._run(write)

    async def stats(self) -> Stats:
        def read() -> Stats:
            rows, newest = self._db.execute(
                "SELECT count(*), max(updated_at) FROM vehicles").fetchone()
            available = self._db.execute(
                "SELECT count(*) FROM vehicles WHERE status = 'available'").fetchone()[0]
            vocab = {col: sorted(r[0] for r in self._db.execute(sql).fetchall())
                     for col, sql in VOCABULARY_SQL.items()}
            return Stats(rows, available, newest, vocab)
        result: Stats = await self._run(read)
        return result

    async def version(self) -> int:
        n: int = await self._run(lambda: self._db.execute(VERSION_SQL).fetchone()[0])
        return n

    async def close(self) -> None:
        self._db.close()


class PostgresStore:
    """PostgreSQL through an asyncpg pool: the same schema and queries."""

    backend = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, timeout_s: float = 5.0) -> PostgresStore:
        import asyncpg
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8, timeout=timeout_s,
                                         command_timeout=timeout_s)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            for sql in (SCHEMA, *POSTGRES_VERSION):
                await conn.execute(sql)
        return cls(pool)

    async def search(self, f: Filters, limit: int) -> list[Vehicle]:
        clause, args = where(f, lambda n: f"${n}")
        sql = (f"SELECT {', '.join(COLUMNS)} FROM vehicles WHERE {clause} ORDER BY price "
               f"LIMIT ${len(args) + 1}")
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *args, limit)
        return [_vehicle(tuple(r)) for r in rows]

    async def get(self, stock_numbers: Sequence[str]) -> dict[str, Vehicle]:
        if not stock_numbers:
            return {}
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM vehicles "
                                    "WHERE stock_number = ANY($1::text[])", list(stock_numbers))
        return {r[0]: _vehicle(tuple(r)) for r in rows}

    async def upsert(self, vehicles: Sequence[Vehicle]) -> None:
        sql = (f"INSERT INTO vehicles ({', '.join(COLUMNS)}) VALUES "
               f"({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))}) "
               "ON CONFLICT (stock_number) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:]))
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(sql, [v.row() for v in vehicles])

    async def stats(self) -> Stats:
        async with self._pool.acquire() as conn:
            rows, newest = await conn.fetchrow("SELECT count(*), max(updated_at) FROM vehicles")
            available = await conn.fetchval(
                "SELECT count(*) FROM vehicles WHERE status = 'available'")
            vocab = {col: sorted(r[0] for r in await conn.fetch(sql))
                     for col, sql in VOCABULARY_SQL.items()}
        return Stats(rows, available, newest, vocab)

    async def version(self) -> int:
        async with self._pool.acquire() as conn:
            n: int = await conn.fetchval(VERSION_SQL)
        return n

    async def close(self) -> None:
        await self._pool.close()


def age_hours(updated_at: str | None, now: float | None = None) -> float | None:
    """How old the newest row is, in hours (None without rows or a readable time)."""
    import datetime
    if not updated_at:
        return None
    try:
        t = datetime.datetime.fromisoformat(updated_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return max(0.0, ((now if now is not None else time.time()) - t.timestamp()) / 3600)
