"""An Atom feed (RFC 4287) of records: one entry a record, newest first, so a feed
reader shows what ran, where and how it ended.

Every text from a record (command, tags, reason, notes, host, ...) goes through
simtui.textsafe.xml_text: controls and colours removed, only characters XML 1.0
allows, one line where the element is a title or an attribute. So the feed is
valid XML whatever bytes a job or a user put in a record."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timezone

from simtui.model import Record
from simtui.textsafe import one_line, xml_text

ATOM = "http://www.w3.org/2005/Atom"


def atom_feed(records: Iterable[Record], title: str | None = None) -> bytes:
    """The feed as UTF-8 XML; its ``updated`` is the latest change of any record."""
    feed = ET.Element("feed", xmlns=ATOM)
    _text(feed, "title", xml_text(title or f"simtui records on {socket.gethostname()}", single_line=True))
    _text(feed, "id", "urn:simtui:records")
    author = ET.SubElement(feed, "author")
    _text(author, "name", "simtui")
    _text(feed, "generator", "simtui")
    updated = _text(feed, "updated", "")
    latest = 0.0
    for record in records:
        changed = record.updated or record.created or 0.0
        latest = max(latest, changed)
        feed.append(_entry(record, changed))
    updated.text = _rfc3339(latest or time.time())
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _entry(record: Record, changed: float) -> ET.Element:
    entry = ET.Element("entry")
    _text(entry, "id", f"urn:simtui:{xml_text(record.label, single_line=True)}")
    _text(entry, "title", xml_text(f"{record.state.value}: {record.label} {record.command}", single_line=True))
    _text(entry, "updated", _rfc3339(changed))
    if record.created:
        _text(entry, "published", _rfc3339(record.created))
    for tag in record.tags:
        ET.SubElement(entry, "category", term=xml_text(tag, single_line=True))
    _text(entry, "content", _summary(record)).set("type", "text")
    return entry


def _summary(record: Record) -> str:
    lines = [f"host: {one_line(record.host)}", f"command: {one_line(record.command)}"]
    if record.workdir:
        lines.append(f"workdir: {one_line(record.workdir)}")
    if record.exit_code is not None:
        lines.append(f"exit code: {record.exit_code}")
    if record.duration is not None:
        lines.append(f"duration: {record.duration:.1f} s")
    for name in ("reason", "notes"):
        value = getattr(record, name)
        if value:
            lines.append(f"{name}: {value}")
    return xml_text("\n".join(lines))


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
