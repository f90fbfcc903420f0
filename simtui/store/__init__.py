"""The records log: SQLite through sqlite-utils (see db.py for the file and schema)."""

from simtui.store.records import Store, parse_since

__all__ = ["Store", "parse_since"]
