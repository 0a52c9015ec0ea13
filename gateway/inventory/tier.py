"""The `inventory` tier: a stock question answered from the database, with no model.

It reads the filters from the customer's turns, lists up to `max_results` available
vehicles that match (price, mileage, a link), says plainly when nothing matches and offers
the nearest ones, and streams that like any tier. It never names a pending or sold car. It
is on-site, costs nothing, and has its own health: the database reachable, its row count
and the age of its data (stale past `max_age_h`).

The same lookup grounds the models: for intents with `ground: true` the matching rows go
into the system prompt as a compact table, so on-prem (and OpenAI, where the intent allows
it) answers from the real stock. The table holds stock, never customer data.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from gateway.config import InventoryConfig
from gateway.cost import prompt_text
from gateway.errors import TierUnavailable
from gateway.inventory.extract import SYNONYMS, extract, extract_one, matchers
from gateway.inventory.importer import open_store
from gateway.inventory.store import Backend, Filters, Stats, Vehicle, age_hours
from gateway.language.intents import remembered
from gateway.providers.base import (
    ALSO_HELD,
    GROUNDING_HEADER,
    HEADERS,
    HELD_STOCK,
    Delta,
    StreamEvent,
    TierRequest,
)
from gateway.tiers import TierContext, TierSpec

MODEL = "scout-inventory"
# A question about the stock as such, with nothing to filter by.
STOCK_CUE = re.compile(r"\b(?:in stock|inventory|on (?:the|your) lot|available|"
                       r"what (?:cars|vehicles|trucks) do you (?:carry|stock)|"
                       r"en existencia|inventario|tienen)\b", re.I)
GROUNDS_KEPT = 1024   # distinct grounding lookups remembered at most


def describe(v: Vehicle) -> str:
    miles = "new" if v.mileage < 100 else f"{v.mileage:,} mi"
    return (f"{v.year} {v.make} {v.model} {v.trim}, {v.exterior_color}, {v.fuel}, "
            f"{v.drivetrain}, {miles}, ${v.price:,}")


@dataclass(frozen=True, slots=True)
class StockRow:
    """One vehicle as the models read it: its stock number and its table line."""
    stock: str
    line: str


Grounding = tuple[StockRow, ...]
GroundKey = tuple[Filters, int, int]   # filters, rows, stock version


def stock_table(rows: Sequence[StockRow], held: Collection[str] = ()) -> str:
    """The grounding message for `rows`. A row whose line is in `held` (an earlier table
    of the conversation has it, as it is now) is named by its stock number only: the
    replica reads it once, and the prompt grows by the cars discussed, not by every
    question asked of them."""
    new = [r.line for r in rows if r.line not in held]
    again = ", ".join(r.stock for r in rows if r.line in held)
    if not new:
        return f"{HELD_STOCK} {again}."
    table = "\n".join(new)
    return f"{GROUNDING_HEADER}\n| stock | vehicle |\n{table}" + \
        (f"\n{ALSO_HELD} {again}." if again else "")


def relaxations(f: Filters) -> list[Filters]:
    """Ever looser versions of `f`, for the nearest matches when nothing matches."""
    steps = [replace(f, colors=()),
             replace(f, colors=(), price_max=int(f.price_max * 1.15) if f.price_max else None,
                     mileage_max=None, year_min=None, year_max=None),
             replace(f, colors=(), price_max=None, price_min=None, mileage_max=None,
                     year_min=None, year_max=None, condition=None),
             replace(Filters(), makes=f.makes, body_styles=f.body_styles),
             replace(Filters(), body_styles=f.body_styles, fuels=f.fuels)]
    return [s for s in steps if s != f]


class Inventory:
    """The store, its vocabulary and health, and the two uses: answer, and ground."""

    def __init__(self, store: Backend, cfg: InventoryConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.stats: Stats | None = None
        self.error: str = ""
        self.checked_at = 0.0
        self._synonyms = {**SYNONYMS, **{p: (f, v) for p, f, v in cfg.synonyms}}
        # The vocabulary, and extract_one for it remembering each text, as the intent
        # classifier does: a conversation's earlier turns come again with each of its turns
        # (the OpenAI API resends them).
        self._reader: tuple[object, Callable[[str], Filters]] | None = None
        # Grounding lookups by (filters, rows, stock version), each a task every turn asking
        # the same awaits (one query, not one each), kept while the stock stays the same;
        # and the stock's version, read at most every ground_reuse_s: when, and the read.
        self._grounds: dict[GroundKey, asyncio.Task[Grounding]] = {}
        self._version: tuple[float, asyncio.Task[int]] | None = None

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(5):
                self.stats = await self.store.stats()
            self.error = ""
        except Exception as exc:   # the database unreachable is a state, not a crash
            self.error = f"{type(exc).__name__}: {str(exc)[:120]}"
        self.checked_at = time.time()

    def health(self) -> tuple[str, str]:
        """(state, reason) for /health and the dashboard."""
        if self.error:
            return "down", f"inventory database unreachable ({self.error})"
        if self.stats is None:
            return "unknown", "not read yet"
        s = self.stats
        age = age_hours(s.updated_at)
        words = (f"{s.available} of {s.rows} vehicles available ({self.store.backend}), "
                 f"updated {'never' if age is None else f'{age:.0f} h ago'}")
        if age is None or age > self.cfg.max_age_h:
            return "stale", f"{words}: older than {self.cfg.max_age_h:g} h, check the DMS import"
        return "up", words

    def filters(self, messages: list[dict[str, Any]]) -> Filters:
        turns = [prompt_text([m]) for m in messages if m.get("role") == "user"]
        vocab = self.stats.vocabulary if self.stats else {}
        if self._reader is None or self._reader[0] is not vocab:  # the stock changed
            read = partial(extract_one, vocabulary=vocab, synonyms=self._synonyms,
                           compiled=matchers(vocab, self._synonyms))
            self._reader = (vocab, remembered(read))
        return extract(turns, vocab, self._synonyms, read=self._reader[1])

    def is_stock_question(self, messages: list[dict[str, Any]]) -> bool:
        """Does the conversation ask about stock: something to search for (a make, model,
        body style, colour, price ...), or the stock itself ("what's on the lot")?"""
        last = next((prompt_text([m]) for m in reversed(messages) if m.get("role") == "user"), "")
        return not self.filters(messages).empty() or STOCK_CUE.search(last) is not None

    async def matches(self, messages: list[dict[str, Any]]) -> tuple[list[Vehicle], bool]:
        """The vehicles that match (True), or else the nearest ones (False), or neither."""
        f = self.filters(messages)
        n = self.cfg.max_results
        rows = await self.store.search(f, n)
        if rows:
            return rows, True
        for looser in relaxations(f):
            near = await self.store.search(looser, n)
            if near:
                return near, False
        return [], False

    async def answer(self, messages: list[dict[str, Any]]) -> str:
        rows, exact = await self.matches(messages)
        if rows and exact:
            head = (f"Here {'is the' if len(rows) == 1 else 'are'} "
                    f"{'' if len(rows) == 1 else str(len(rows)) + ' '}"
                    f"available vehicle{'s' if len(rows) > 1 else ''} on our lot that "
                    f"match{'es' if len(rows) == 1 else ''}:")
            return "\n".join([head, *self._lines(rows),
                              "Prices and availability are from our live inventory. "
                              "Would you like to book a test drive?"])
        if rows:
            return "\n".join([
                "I don't see an exact match on our lot right now. These are the closest we "
                "have, and they do not match everything you asked for:",
                *self._lines(rows), "Want me to ask a salesperson to look for an exact "
                "match at our sister stores?"])
        return ("I don't see anything like that on our lot right now. A salesperson can "
                "check incoming stock for you: call (555) 010-2000.")

    def _lines(self, rows: list[Vehicle]) -> list[str]:
        return [f"- {describe(v)} — stock {v.stock_number}: "
                f"{self.cfg.link.format(stock_number=v.stock_number)}" for v in rows]

    async def grounding(self, messages: list[dict[str, Any]]) -> Grounding:
        """The stock that matches the conversation, for a model to read (`stock_table`);
        none when nothing matches or the database can't answer in time.

        A lookup is kept while the stock stays the same: a conversation's earlier stock
        questions, grounded again with each turn, cost no query. The stock's version is
        read at most every `ground_reuse_s` (0: every turn), so a sale shows in prompts
        within that time."""
        f = self.filters(messages)
        kept = self._kept(f)
        if kept is not None:
            return kept
        try:
            async with asyncio.timeout(0.5):
                version = await self._stock_version()
                return await self._lookup(f, version)
        except Exception:
            return ()

    async def _table(self, f: Filters) -> Grounding:
        rows = await self.store.search(f, self.cfg.ground_rows)
        return tuple(StockRow(v.stock_number, f"| {v.stock_number} | {describe(v)} |")
                     for v in rows)

    def _stock_version(self) -> Awaitable[int]:
        """The stock's version: one read shared by every turn within ground_reuse_s."""
        loop = asyncio.get_running_loop()
        now, made = loop.time(), self._version
        if made is None or now - made[0] >= self.cfg.ground_reuse_s \
                or (made[1].done() and not _succeeded(made[1])):
            made = self._version = (now, loop.create_task(self.store.version()))
        return asyncio.shield(made[1])   # one turn's timeout must not cancel the others'

    def _lookup(self, f: Filters, version: int) -> Awaitable[Grounding]:
        """The grounding of `f` for this version of the stock: made once, so a busy lot's
        database (and the thread SQLite runs on) sees one query per question shape while
        the stock stays the same, not one per turn."""
        key = (f, self.cfg.ground_rows, version)
        task = self._grounds.get(key)
        if task is None:
            if len(self._grounds) >= GROUNDS_KEPT:   # the other versions', then the oldest
                self._grounds = {k: t for k, t in self._grounds.items() if k[2] == version}
                for old in list(self._grounds)[:len(self._grounds) - GROUNDS_KEPT // 2]:
                    del self._grounds[old]
            task = self._grounds[key] = asyncio.get_running_loop().create_task(self._table(f))
            task.add_done_callback(lambda t: self._forget(key, t))
        return asyncio.shield(task)

    def _kept(self, f: Filters) -> Grounding | None:
        """A finished lookup for the stock's version as last read within ground_reuse_s,
        without waiting for anything."""
        made = self._version
        if made is None or not _succeeded(made[1]) \
                or asyncio.get_running_loop().time() - made[0] >= self.cfg.ground_reuse_s:
            return None
        task = self._grounds.get((f, self.cfg.ground_rows, made[1].result()))
        if task is None or not _succeeded(task):
            return None
        return task.result()

    def _forget(self, key: GroundKey, task: asyncio.Task[Grounding]) -> None:
        """A failed lookup is not reused: the next turn asks the database again."""
        if not _succeeded(task):
            if self._grounds.get(key) is task:
                del self._grounds[key]


def _succeeded(task: asyncio.Task[Any]) -> bool:
    """Finished, with a result: not pending, cancelled or failed."""
    return task.done() and not task.cancelled() and task.exception() is None


async def open_inventory(cfg: InventoryConfig) -> Inventory:
    """The stock as configured: its store opened (and seeded if empty), its figures read."""
    inventory = Inventory(await open_store(cfg), cfg)
    await inventory.refresh()
    return inventory


# How often the row count and data age (`/health`) are read again.
REFRESH_S = 30.0


class InventoryProvider:
    """Answers stock questions from the inventory it was opened with. Opened by its spec
    (`TIER.open`), it owns the store and a task that keeps its figures fresh, and
    `close()` ends both; the app lends the same inventory to the turns it grounds."""

    tier = "inventory"
    model = MODEL

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._refresh: asyncio.Task[None] | None = None

    def keep_fresh(self) -> None:
        async def refresh() -> None:
            while True:
                await asyncio.sleep(REFRESH_S)
                await self.inventory.refresh()
        self._refresh = asyncio.get_running_loop().create_task(refresh())

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        try:
            async with asyncio.timeout(2):
                text = await self.inventory.answer(request.messages)
        except TimeoutError:
            raise TierUnavailable("inventory database did not answer within 2 s") from None
        except Exception as exc:
            raise TierUnavailable(f"inventory database error ({type(exc).__name__})") from None
        yield HEADERS
        lines = text.split("\n")
        for i, line in enumerate(lines):
            yield Delta(line + ("\n" if i < len(lines) - 1 else ""), MODEL)
        yield Delta("", MODEL, finish_reason="stop")

    def health(self) -> tuple[str, str]:
        """The database reachable, its row count and the age of its data (`/health`)."""
        return self.inventory.health()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        await self.inventory.store.close()


async def _open(ctx: TierContext) -> InventoryProvider:
    provider = InventoryProvider(await open_inventory(ctx.settings.inventory))
    provider.keep_fresh()
    return provider


# Opened only when `inventory.enabled`; it opens its store, and closes it.
TIER = TierSpec(name="inventory", label="inventory", color="#a371f7", open=_open)
