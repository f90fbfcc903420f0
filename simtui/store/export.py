"""Records out as JSON (a list of whole records, written as they are read) or CSV (one
row a record in the flat columns of simtui.store.frame, the same rows simtui.records()
gives)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from simtui.model import Record
from simtui.store.frame import columns, flat_record

FORMATS = ("json", "csv")


def write_json(records: Iterable[Record], out: TextIO) -> None:
    out.write("[")
    for i, record in enumerate(records):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(record.to_dict(), ensure_ascii=False))
    out.write("\n]\n")


def write_csv(records: Iterable[Record], out: TextIO) -> None:
    """One row a record: frame.COLUMNS, then a ``params.<dotted.path>`` column for every
    parameter of any record (so the rows are flattened first, then written). Times are
    ISO 8601 in UTC; a text value is its cell as it is, any other value its JSON (``0.1``,
    ``true``, tags as ``["a", "b"]``); None, or a parameter a record lacks, is empty."""
    rows = [flat_record(record) for record in records]
    names = columns(rows)
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        writer.writerow(_cell(row.get(name)) for name in names)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def write(records: Iterable[Record], out: TextIO, fmt: str) -> None:
    {"json": write_json, "csv": write_csv}[fmt](records, out)
