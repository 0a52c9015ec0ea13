"""The inventory tier: the dealership's own stock, answered from a database.

`importer` reads the DMS export into a store and opens the store as configured, `store`
holds the backends (SQLite, PostgreSQL), `extract` reads what a question asks for, and
`tier` answers and grounds (the tier opens its store itself: `open_inventory`).
"""
