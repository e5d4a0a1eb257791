"""The device's local store (APSW/SQLite): index, outbox, runs, errors, conflicts, meta.

One database per state dir. Opening it applies the numbered migrations in
`migrations/NNNN_*.sql`, each in one transaction with its `schema_migrations` row, after
taking a backup copy of an existing store. A file at the store path that is not a shoal
store, or fails `PRAGMA quick_check`, raises StoreCorrupt and is never touched.
"""

from shoal.localstore.store import STORE_FILENAME, Store, open_store

__all__ = ["STORE_FILENAME", "Store", "open_store"]
