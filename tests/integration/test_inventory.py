"""The inventory tier against real databases: SQLite and PostgreSQL pass the same tests."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.appkeys import CHAT, INVENTORY, PROVIDERS
from gateway.config import InventoryConfig
from gateway.inventory.extract import extract
from gateway.inventory.importer import import_csv
from gateway.inventory.store import Backend, PostgresStore, SQLiteStore
from gateway.inventory.tier import Inventory, StockRow, stock_table
from gateway.providers.base import ALSO_HELD, GROUNDING_HEADER, HELD_STOCK
from tests.conftest import AUTH, STAFF, make_settings
from tests.servers import PostgresServer
from tests.sse_client import read_events

SAMPLE = (Path(__file__).resolve().parents[2] / "gateway" / "data" / "inventory.csv").read_text()
ROWS = list(csv.DictReader(io.StringIO(SAMPLE)))


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        s: Backend = SQLiteStore(tmp_path / "inventory.sqlite3")
        yield s
        await s.close()
        return
    server = PostgresServer(tmp_path)
    server.start()
    try:
        s = await PostgresStore.connect(server.dsn)
        yield s
        await s.close()
    finally:
        server.stop()


def with_rows(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, list(ROWS[0]))
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


async def test_import_refuses_bad_rows_with_reasons_and_a_reimport_changes_nothing(store):
    bad = [dict(r) for r in ROWS[:3]]
    bad[0]["price"] = "call us"
    vin = bad[1]["vin"]
    bad[1]["vin"] = vin[:8] + ("0" if vin[8] != "0" else "1") + vin[9:]   # wrong check digit
    bad[2]["status"] = "on hold"
    report = await import_csv(store, with_rows(bad + ROWS[3:]))
    assert (report.added, report.changed, report.unchanged) == (len(ROWS) - 3, 0, 0)
    reasons = [why for _, _, why in report.refused]
    assert reasons == ["price 'call us' is not a number",
                       f"VIN {bad[1]['vin']} fails its check digit (or is not 17 valid "
                       "characters)",
                       "unknown status 'on hold' (known: available, pending, sold)"]
    again = await import_csv(store, with_rows(ROWS[3:]))
    assert (again.added, again.changed, again.unchanged, again.refused) == \
        (0, 0, len(ROWS) - 3, [])
    moved = dict(ROWS[5], price="19999")
    third = await import_csv(store, with_rows([moved]))
    assert (third.added, third.changed) == (0, 1)
    assert (await store.get([moved["stock_number"]]))[moved["stock_number"]].price == 19999


async def test_an_answer_names_exactly_the_available_rows_that_match(store):
    await import_csv(store, SAMPLE)
    inventory = Inventory(store, InventoryConfig(max_results=50))
    await inventory.refresh()
    for question in ("Do you have a blue RAV4 hybrid under $45k?", "any used Honda SUVs?",
                     "Show me trucks under 50,000 miles", "Any electric cars from 2024 or newer?"):
        f = inventory.filters([{"role": "user", "content": question}])
        expected = {r["stock_number"] for r in ROWS if r["status"] == "available"
                    and matches(r, f)}
        answer = await inventory.answer([{"role": "user", "content": question}])
        named = {s for s in (r["stock_number"] for r in ROWS) if f"stock {s}:" in answer}
        if expected:
            assert named == expected, question
        else:
            assert answer.startswith("I don't see"), question
        sold = {r["stock_number"] for r in ROWS if r["status"] != "available"}
        assert not named & sold, "a pending or sold car is never named"


def matches(row: dict[str, str], f) -> bool:
    """The filters, by hand, on a CSV row: what the database query must agree with."""
    checks = [
        not f.makes or row["make"].lower() in {m.lower() for m in f.makes},
        not f.models or row["model"].lower() in {m.lower() for m in f.models},
        not f.body_styles or row["body_style"].lower() in {b.lower() for b in f.body_styles},
        not f.fuels or row["fuel"].lower() in {x.lower() for x in f.fuels},
        not f.colors or any(c in row["exterior_color"].lower() for c in f.colors),
        f.year_min is None or int(row["year"]) >= f.year_min,
        f.year_max is None or int(row["year"]) <= f.year_max,
        f.price_max is None or int(row["price"]) <= f.price_max,
        f.price_min is None or int(row["price"]) >= f.price_min,
        f.mileage_max is None or int(row["mileage"]) <= f.mileage_max,
        f.condition != "new" or int(row["mileage"]) < 100,
        f.condition != "used" or int(row["mileage"]) >= 100,
    ]
    return all(checks)


async def test_health_says_rows_age_and_stale(store):
    await import_csv(store, SAMPLE)
    fresh = Inventory(store, InventoryConfig(max_age_h=10_000))
    await fresh.refresh()
    state, reason = fresh.health()
    available = sum(r["status"] == "available" for r in ROWS)
    assert state == "up" and f"{available} of {len(ROWS)} vehicles available" in reason
    stale = Inventory(store, InventoryConfig(max_age_h=0.001))
    await stale.refresh()
    assert stale.health()[0] == "stale" and "check the DMS import" in stale.health()[1]


async def test_with_both_models_down_the_stock_answers(gw_client, onprem_sim, openai_sim):
    await onprem_sim.set_fault("http_500")
    await openai_sim.set_fault("refuse")
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1")))
    vocab = {"make": ["Toyota"], "model": ["RAV4"], "fuel": ["hybrid"]}
    for question, exact in (("Do you have a RAV4 hybrid?", True),
                            ("Do you have a blue RAV4 hybrid?", False)):   # none is blue
        events = await read_events(await client.post("/api/chat", json={"message": question}))
        done = events[-1][1]
        assert done["served_by"] == ["inventory"] and done["models"] == ["scout-inventory"]
        text = "".join(e[1]["text"] for e in events if e[0] == "delta")
        f = extract([question], vocab)
        expected = {r["stock_number"] for r in ROWS if r["status"] == "available"
                    and matches(r, f)}
        named = {r["stock_number"] for r in ROWS if f"stock {r['stock_number']}:" in text}
        available_rav4_hybrids = {r["stock_number"] for r in ROWS if r["status"] == "available"
                                  and r["model"] == "RAV4" and r["fuel"] == "hybrid"}
        if exact:
            assert expected and named == expected, question
        else:
            assert not expected and text.startswith("I don't see an exact match")
            assert named and named <= available_rav4_hybrids, "the nearest: same model, fuel"
    assert openai_sim.stats.requests == 0
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["tiers"]["inventory"]["state"] in ("up", "stale")


async def test_a_grounded_turn_sends_on_prem_the_matching_rows(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1")))
    events = await read_events(await client.post("/api/chat", json={
        "message": "Any used Honda SUVs?"}))
    done = events[-1][1]
    assert done["served_by"] == ["onprem"] and done["grounded"].endswith(" rows")
    sent = onprem_sim.stats.last_messages
    table = next(m["content"] for m in sent if m["role"] == "system"
                 and "live inventory" in m["content"])
    f = extract(["Any used Honda SUVs?"], {"make": ["Honda"]})
    for r in ROWS:
        if r["status"] == "available" and matches(r, f):
            assert r["stock_number"] in table
        if r["status"] == "sold":
            assert r["stock_number"] not in table


async def test_a_row_the_conversation_holds_is_named_not_sent_again(
        gw_client, onprem_sim, openai_sim):
    """A follow-up whose matches are partly in an earlier table: the new rows as a table,
    the others by stock number; every matching car is in the prompt once."""
    app = create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1"))
    client = await gw_client(app)
    a, b, c = (StockRow(s, f"| {s} | 2022 Honda CR-V EX {s} |") for s in ("A1", "B2", "C3"))

    async def grounding(messages):   # the lookups, as a store would answer them
        asked = [m for m in messages if m["role"] == "user"]
        return ((a, b), (b, c))[len(asked) - 1]

    app[INVENTORY].grounding = grounding   # type: ignore[method-assign]
    conversation = [{"role": "user", "content": "Any used Honda SUVs?"},
                    {"role": "assistant", "content": "We have two."},
                    {"role": "user", "content": "Any other Honda SUV, a newer one?"}]
    r = await client.post("/v1/chat/completions", json={"model": "scout",
                                                         "messages": conversation},
                          headers=AUTH)
    assert r.status == 200, await r.text()
    sent = onprem_sim.stats.last_messages
    assert sent[-2]["content"] == f"{GROUNDING_HEADER}\n| stock | vehicle |\n{c.line}\n" \
        f"{ALSO_HELD} B2."
    prompt = "\n".join(m["content"] for m in sent)
    assert all(prompt.count(row.line) == 1 for row in (a, b, c)), "each car's row once"


def test_the_stock_table_names_rows_already_held_by_stock_number():
    rows = [StockRow("A1", "| A1 | 2022 Honda CR-V |"), StockRow("B2", "| B2 | 2021 Kia Soul |")]
    full = stock_table(rows)
    assert full.startswith(GROUNDING_HEADER) and all(r.line in full for r in rows)
    assert ALSO_HELD not in full
    part = stock_table(rows, {rows[0].line})
    assert rows[1].line in part and rows[0].line not in part
    assert part.endswith(f"{ALSO_HELD} A1.")
    assert stock_table(rows, {r.line for r in rows}) == f"{HELD_STOCK} A1, B2."
    changed = stock_table(rows, {"| A1 | 2022 Honda CR-V, price changed |"})
    assert rows[0].line in changed, "a row that changed is sent again, as it is now"


async def test_only_a_turn_a_model_may_answer_is_grounded(gw_client, onprem_sim, openai_sim):
    """The stock table is for a model to read: a pinned static reply does not look it up."""
    app = create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1"))
    client = await gw_client(app)
    looked: list[int] = []
    inventory = app[INVENTORY]
    real = inventory.grounding

    async def grounding(messages):
        looked.append(1)
        return await real(messages)

    inventory.grounding = grounding   # type: ignore[method-assign]
    body = {"messages": [{"role": "user", "content": "Any used Honda SUVs?"}]}
    static = await client.post("/v1/chat/completions", json={**body, "model": "scout/static"},
                               headers=AUTH)
    assert static.status == 200 and (await static.json())["served_by"] == ["static"]
    assert looked == []
    routed = await client.post("/v1/chat/completions", json={**body, "model": "scout"},
                               headers=AUTH)
    assert (await routed.json())["served_by"] == ["onprem"] and looked == [1]


class Counting:
    """A real store, with its searches counted and, when told, failing."""

    def __init__(self, store: Backend) -> None:
        self.store, self.searches, self.fail = store, 0, False

    async def search(self, f, limit):
        self.searches += 1
        if self.fail:
            raise ConnectionError("database went away")
        return await self.store.search(f, limit)

    def __getattr__(self, name):
        return getattr(self.store, name)


async def test_grounding_reuses_one_lookup_per_question_shape_within_its_window(store):
    import asyncio

    await import_csv(store, SAMPLE)
    counted = Counting(store)
    inventory = Inventory(counted, InventoryConfig(ground_reuse_s=30))
    await inventory.refresh()
    ask = "Which hybrid SUV would you recommend for a family of five? (#{})"
    turns = [[{"role": "user", "content": ask.format(i)}] for i in range(40)]
    got = await asyncio.gather(*(inventory.grounding(t) for t in turns))
    assert counted.searches == 1, "concurrent turns with the same filters share one query"
    assert len(set(got)) == 1 and got[0]
    alone = await inventory.grounding([{"role": "user", "content": "any red trucks?"}])
    assert counted.searches == 2 and alone != got[0], "other filters: their own lookup"

    # A stock change shows once the window has passed: the next turn reads the database.
    sold = {row.stock for row in got[0]}
    assert sold and sold <= {r["stock_number"] for r in ROWS}
    await import_csv(store, with_rows([dict(r, status="sold") if r["stock_number"] in sold
                                       else r for r in ROWS]))
    assert await inventory.grounding(turns[0]) == got[0], "within the window: as it was"
    inventory.cfg = InventoryConfig(ground_reuse_s=0)
    fresh = await inventory.grounding(turns[0])
    assert counted.searches == 3
    assert not sold & {row.stock for row in fresh}, "a car sold is no longer in the prompt"


async def raw_write(store: Backend, sql: str) -> None:
    """A write by another hand than the gateway's store: the DMS, a DBA's console."""
    if isinstance(store, SQLiteStore):
        other = sqlite3.connect(store.path)
        with other:
            other.execute(sql)
        other.close()
    else:
        async with store._pool.acquire() as conn:   # type: ignore[attr-defined]
            await conn.execute(sql)


async def test_a_lookup_is_kept_while_the_stock_stays_the_same_whoever_changes_it(store):
    """Earlier stock questions come again with every turn: past the reuse window they cost
    no query while the stock is unchanged, and any write to it, by whoever, is seen."""
    await import_csv(store, SAMPLE)
    counted = Counting(store)
    inventory = Inventory(counted, InventoryConfig(ground_reuse_s=0))   # version every turn
    await inventory.refresh()
    turn = [{"role": "user", "content": "Any used Honda SUVs?"}]
    first = await inventory.grounding(turn)
    assert first and await inventory.grounding(turn) == first
    assert counted.searches == 1, "the stock unchanged: the lookup kept"
    cheapest = first[0].stock
    await raw_write(store, f"UPDATE vehicles SET price = price - 500 "
                           f"WHERE stock_number = '{cheapest}'")
    repriced = await inventory.grounding(turn)
    assert counted.searches == 2 and repriced[0].stock == cheapest
    assert repriced[0].line != first[0].line, "the new price, not the one kept"
    await raw_write(store, f"DELETE FROM vehicles WHERE stock_number = '{cheapest}'")
    gone = await inventory.grounding(turn)
    assert counted.searches == 3 and cheapest not in {r.stock for r in gone}


async def test_gateways_starting_together_on_one_postgresql_all_open_it(tmp_path):
    """Each creates the schema (the version's trigger included) in turn, not all at once."""
    import asyncio

    server = PostgresServer(tmp_path)
    server.start()
    try:
        stores = await asyncio.gather(*(PostgresStore.connect(server.dsn) for _ in range(4)))
        assert {await s.version() for s in stores} == {0}
        await import_csv(stores[1], SAMPLE)
        seen = {await s.version() for s in stores}
        assert len(seen) == 1 and seen != {0}, "the import seen by every gateway"
        for s in stores:
            await s.close()
    finally:
        server.stop()


async def test_a_failed_grounding_lookup_is_not_reused(store):
    await import_csv(store, SAMPLE)
    counted = Counting(store)
    inventory = Inventory(counted, InventoryConfig(ground_reuse_s=30))
    await inventory.refresh()
    turn = [{"role": "user", "content": "Which hybrid SUV would you recommend?"}]
    counted.fail = True
    assert await inventory.grounding(turn) == (), "no table, and no error to the turn"
    counted.fail = False
    assert await inventory.grounding(turn) and counted.searches == 2


async def test_earlier_turns_are_read_once_and_read_again_once_the_stock_changes(
        store, monkeypatch):
    import gateway.inventory.extract as extract_module
    import gateway.inventory.tier as tier

    await import_csv(store, SAMPLE)
    inventory = Inventory(store, InventoryConfig())
    await inventory.refresh()
    read: list[str] = []
    real = extract_module.extract_one

    def counted(text, *args, **kwargs):
        read.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(tier, "extract_one", counted, raising=False)
    monkeypatch.setattr(extract_module, "extract_one", counted)
    chat = [{"role": "user", "content": "any RAV4 hybrids?"},
            {"role": "assistant", "content": "Two."},
            {"role": "user", "content": "and in red?"}]
    first = inventory.filters(chat)
    assert first.models == ("RAV4",) and first.colors == ("red",) and len(read) == 2
    chat += [{"role": "assistant", "content": "One."}, {"role": "user", "content": "Zephyrus?"}]
    assert inventory.filters(chat).models == ("RAV4",), "no Zephyrus on the lot yet"
    assert read[2:] == ["Zephyrus?"], "the earlier turns were not read again"

    # The lot starts selling it: the next turn understands the name, in old turns too.
    await import_csv(store, with_rows([dict(ROWS[0], model="Zephyrus"), *ROWS[1:]]))
    await inventory.refresh()
    assert inventory.filters(chat).models == ("Zephyrus",)


async def test_the_inventory_tier_opens_its_store_and_closes_it_with_the_app(
        aiohttp_server, onprem_sim, openai_sim):
    """The tier's spec opens what it owns (the store, the task that keeps its figures
    fresh) and its provider closes both when the app stops; the app lends the same stock
    to the turns it grounds."""
    app = create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1"))
    server = await aiohttp_server(app)
    provider = app[PROVIDERS]["inventory"]
    assert provider.inventory is app[INVENTORY] is app[CHAT].inventory
    assert (await provider.inventory.store.stats()).rows > 0, "opened and seeded"
    refresh = provider._refresh
    assert refresh is not None and not refresh.done()
    await server.close()
    assert refresh.cancelled(), "its refresh task ends with it"
    with pytest.raises(sqlite3.ProgrammingError):   # a closed SQLite connection
        await provider.inventory.store.stats()
