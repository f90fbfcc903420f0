"""Records out as JSON (a list of whole records) or CSV (one row a record, nested
values as JSON text in their cells), written as they are read."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from simtui.model import Record
from simtui.store.records import COLUMNS, JSON_COLUMNS

FORMATS = ("json", "csv")


def write_json(records: Iterable[Record], out: TextIO) -> None:
    out.write("[")
    for i, record in enumerate(records):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(record.to_dict(), ensure_ascii=False))
    out.write("\n]\n")


def write_csv(records: Iterable[Record], out: TextIO) -> None:
    """Columns in record order; None is an empty cell, lists and mappings are JSON."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for record in records:
        data = record.to_dict()
        writer.writerow(
            json.dumps(data[name], ensure_ascii=False) if name in JSON_COLUMNS and data[name] is not None
            else data[name]
            for name in COLUMNS
        )


def write(records: Iterable[Record], out: TextIO, fmt: str) -> None:
    {"json": write_json, "csv": write_csv}[fmt](records, out)
