"""An Atom feed (RFC 4287) of records: one entry a record, newest first, so a feed
reader shows what ran, where and how it ended.

Every text from a record (command, tags, reason, notes, host, ...) goes through
simtui.textsafe.xml_text: controls and colours removed, only characters XML 1.0
allows, one line where the element is a title or an attribute. So the feed is
valid XML whatever bytes a job or a user put in a record. The feed is written entry by
entry as the records are read: memory stays flat whatever their count."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from typing import BinaryIO

from simtui.store.export import Chunked
from simtui.store.records import Store
from simtui.textsafe import one_line, xml_text

ATOM = "http://www.w3.org/2005/Atom"
ENTRY = ("label", "state", "command", "updated", "created", "tags", "host", "workdir", "exit_code", "duration",
         "reason", "notes")
CHANGED = "coalesce(nullif(updated, 0), nullif(created, 0), 0)"  # when a record last changed (0: unknown)


def write_feed(store: Store, out: BinaryIO, title: str | None = None) -> None:
    """The feed of every record, newest first, as UTF-8 XML (indented as ElementTree
    indents); its ``updated`` is the latest change of any record (now when none)."""
    (latest,) = store.aggregate([f"max({CHANGED})"], ["updated", "created"], limit=None)
    title = xml_text(title or f"simtui records on {socket.gethostname()}", single_line=True)
    with Chunked(out) as chunks:
        chunks.write(f"""<?xml version='1.0' encoding='utf-8'?>
<feed xmlns="{ATOM}">
  <title>{_escape(title)}</title>
  <id>urn:simtui:records</id>
  <author>
    <name>simtui</name>
  </author>
  <generator>simtui</generator>
  <updated>{_rfc3339(latest or time.time())}</updated>""".encode())
        for row in store.select(ENTRY, limit=None):
            chunks.write(_entry(*row).encode())
        chunks.write(b"\n</feed>")


def _entry(label: str, state: str, command: str, updated: float | None, created: float | None, tags: str | None,
           host: str, workdir: str | None, exit_code: int | None, duration: float | None, reason: str | None,
           notes: str | None) -> str:
    lines = [
        "", "  <entry>",
        f"    <id>urn:simtui:{_escape(xml_text(label, single_line=True))}</id>",
        f"    <title>{_escape(xml_text(f'{state}: {label} {command}', single_line=True))}</title>",
        f"    <updated>{_rfc3339(updated or created or 0.0)}</updated>",
    ]
    if created:
        lines.append(f"    <published>{_rfc3339(created)}</published>")
    lines += [f'    <category term="{_escape(xml_text(tag, single_line=True), quote=True)}" />'
              for tag in (json.loads(tags) if tags else ())]
    summary = [f"host: {one_line(host)}", f"command: {one_line(command)}"]
    if workdir:
        summary.append(f"workdir: {one_line(workdir)}")
    if exit_code is not None:
        summary.append(f"exit code: {exit_code}")
    if duration is not None:
        summary.append(f"duration: {duration:.1f} s")
    summary += [f"{name}: {value}" for name, value in (("reason", reason), ("notes", notes)) if value]
    lines += [f'    <content type="text">{_escape(xml_text(chr(10).join(summary)))}</content>', "  </entry>"]
    return "\n".join(lines)


def _escape(text: str, quote: bool = False) -> str:
    """Text for XML character data (or, with ``quote``, a double-quoted attribute)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
