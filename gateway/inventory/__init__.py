"""The inventory tier: the dealership's own stock, answered from a database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import InventoryConfig
from gateway.inventory.importer import import_csv
from gateway.inventory.store import Backend, PostgresStore, SQLiteStore
from gateway.inventory.tier import Inventory


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


async def open_inventory(cfg: InventoryConfig) -> Inventory:
    inventory = Inventory(await open_store(cfg), cfg)
    await inventory.refresh()
    return inventory
