"""Metrics from a job's log, without code changes: the numbers it prints, parsed
as the log arrives into points of time series (stdlib only: ``re`` and ``json``).

What counts as a metric, line by line (a line ends at ``\\n`` or at a lone
``\\r``: each redraw of a progress bar is a line of its own):

- **A JSON object** (the line, blanks around it aside, is one):
  ``{"step": 3, "loss": 0.25, "lr": 1e-3, "val": {"acc": 0.9}}``. Every finite
  int or float at the top level is a metric (booleans, strings, lists are not);
  a nested object gives dotted names one level deep (``val.acc``), deeper ones
  are ignored.
- **Pairs** ``key=value`` and ``key: value``, anywhere in the line, as many as it
  holds: ``epoch 3/400 loss=2.5 acc: 0.91 lr=5e-4``, ``step=10, loss=0.3``,
  Keras's ``loss: 0.2345 - accuracy: 0.9100``, Python dict reprs
  (``{'loss': 0.3, 'epoch': 0.1}``, which are not JSON), after a logging prefix
  (``INFO:train:loss: 0.3``). A key is ``[A-Za-z_][A-Za-z0-9_./-]*`` that does
  not follow a letter, digit or one of ``_ . / = -`` (so ``--lr=0.1`` and the
  ``x`` of ``http://x:8080`` are not keys); its closing quote may follow it.
  ``=`` may have blanks around it; ``:`` needs a blank after it (as in YAML and
  Guild AI's default pattern). The value is a decimal number (sign, fraction,
  exponent) that ends there: not followed by a letter, digit, ``_ / -`` or by
  ``.`` or ``:`` and a letter or digit. So times (``12:30:01``, ``ETA: 0:01:23``), dates
  (``2024-01-05``), versions and addresses (``1.2.3``, ``10.0.0.1``), ports
  (``localhost:8080``), numbers with units (``3.2s``) and words are not taken;
  ``91.5%``, ``0.3,`` and ``0.3)`` are. ``nan``, ``inf`` and numbers that overflow
  to infinity are skipped. ``N/M`` (``epoch=3/400``) is taken for the x keys
  only, as ``N``; ``ratio=3/4`` is skipped.
- **The project's patterns**, one regex a line in ``.simtui/metrics`` (blank
  lines and lines starting with ``#`` ignored; see ``load_patterns``), for other
  shapes: each match in a line (``finditer``; patterns are matched against the
  line alone, decoded as UTF-8, without its colours) gives every named group
  that matched a number (blanks around it and one trailing ``, ; : % ) ]``
  allowed) a metric of that group's name; a pattern with groups
  named ``key`` and ``value`` names the metric by what ``key`` matched (as Guild
  AI's output scalars do). These add to the built-in shapes: a name the
  built-in parse already took from the line is not taken twice.

The x axis. ``step``, ``epoch``, ``iter`` and ``iteration`` (``X_KEYS``; also
spelt ``Step``/``STEP``...) give the line's x, in whatever shape the line
holds them; when a line has several, the finest wins: step, iter, iteration,
then epoch. Without one, a line whose text holds an x word followed by a number
(``Epoch 3/400 ...``, ``Epoch [1/10], Step [100/600], Loss: 0.21``,
``Epoch 3: 100%|...| loss=0.3``) takes that. The x keys are not metrics
themselves unless the line has no other (``step=10`` alone is the point
``step`` = 10 at x 10); the word form never makes a metric. A point without an
x takes as its x the count of earlier values of its key (0, 1, 2, ...): those
counts start at 0 for each parser (a parser started at an offset does not know
what came before).

ANSI escape sequences (colours) are removed from a line before it is parsed. A
line longer than ``LINE_LIMIT`` (64 KiB) is skipped whole, its bytes not kept
while it arrives; after ``MAX_KEYS`` distinct names a parser takes no new ones:
memory stays bounded whatever the job prints.

Speed: the bytes are read as Latin-1 (one character a byte, so string indices
are byte offsets), one compiled regex looks for the spots where a metric may
start (``=`` or ``:`` before a number, ``{``) at C speed, and only their lines
are parsed: lines without them cost no Python code at all (with project
patterns, every line is tried). Lines of pairs alone, the bulk of a training
log, are parsed inline in one pass (one ``findall`` each); JSON, colours,
patterns and the rarer cases go through ``MetricParser._line``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simtui.errors import UsageError

X_KEYS = ("step", "epoch", "iter", "iteration")
LINE_LIMIT = 64 * 1024  # bytes: a longer line gives no metric
MAX_KEYS = 10_000  # distinct metric names a parser takes
PATTERNS_FILE = ".simtui/metrics"

# An x key's spellings -> its rank (lower: finer, wins when a line has several).
_X_RANK = {spelt: rank for rank, name in enumerate(("step", "iter", "iteration", "epoch"))
           for spelt in (name, name.title(), name.upper())}
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# Where a metric may be, up to the line's end: every branch opens with a literal,
# so the regex engine skips to the next '=', ':' or '{' in C (its charset prefix).
_HIT = re.compile(r"=[ \t]*[-+.0-9\x1b][^\n]*+|:(?:[ \t]*\x1b|[ \t]+[-+.0-9])[^\n]*+|\{[^\n]*+")
_PAIR = re.compile(  # possessive: no backtracking, one try per spot
    r"(?<![A-Za-z0-9_./=\x80-\xff-])([A-Za-z_][A-Za-z0-9_./-]*+)['\"]?+[ \t]*+(?:=[ \t]*+|:[ \t]++)"
    r"([-+]?+(?=\.?[0-9])[0-9]*+\.?+[0-9]*+(?:[eE][-+]?+[0-9]++)?+)(?:/([0-9]++))?+"
    r"(?![A-Za-z0-9_/-]|[.:][A-Za-z0-9_])")
_X_WORD = re.compile(
    r"(?<![A-Za-z0-9_])(?i:(step|epoch|iteration|iter))[ \t]+[\[(#]?[ \t]*([0-9]+(?:\.[0-9]+)?)"
    r"(?:[ \t]*/[ \t]*[0-9]+)?(?![A-Za-z0-9_]|\.[0-9])")
_ANSI = re.compile(r"\x1b(?:\[[0-9;:?<=>]*[ -/]*[@-~]|[@-Z\\-_])")
_NUMBER_ONLY = re.compile(rf"[ \t]*({_NUMBER})[ \t]*[,;:%)\]]?")  # a pattern's group: "0.5", " 0.5,"


@dataclass(frozen=True, slots=True)
class Point:
    """One value of one metric."""

    key: str  # the metric's name: "loss", "val/acc", "val.acc"
    step: float  # x: the line's step/epoch/iter(ation), else the count of earlier values of key
    value: float
    offset: int  # byte offset in the log of the start of the line it came from


class _NewPoint:
    """``_NewPoint(key, step, value, offset)`` is a Point, made 2.4x faster than by
    the frozen dataclass's ``__init__`` (four ``object.__setattr__`` calls): plain
    slot stores, then the object becomes a Point (the same slots, so the same
    layout; Python allows ``__class__`` assignment between such classes)."""

    __slots__ = ("key", "step", "value", "offset")

    def __init__(self, key: str, step: float, value: float, offset: int) -> None:
        self.key = key
        self.step = step
        self.value = value
        self.offset = offset
        self.__class__ = Point  # type: ignore[assignment]


def load_patterns(text: str) -> list[str]:
    """The patterns of a ``.simtui/metrics`` file's text: one regex a line, blanks
    around it dropped, blank lines and ``#`` lines ignored. A regex that does not
    compile, or has no named group, raises UsageError naming its line."""
    patterns = []
    for number, raw in enumerate(text.splitlines(), 1):
        pattern = raw.strip()
        if pattern and not pattern.startswith("#"):
            _compile(pattern, f"`{PATTERNS_FILE}` line {number}")
            patterns.append(pattern)
    return patterns


def _compile(pattern: str, where: str) -> tuple[re.Pattern[str], bool]:
    """(the compiled pattern, whether it names its metrics by its ``key`` group)."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise UsageError(f"{where}: bad pattern: {err}") from None
    names = set(compiled.groupindex)
    if not names:
        raise UsageError(f"{where}: bad pattern: no named group (write (?P<loss>...) for a metric loss)")
    if ("key" in names) != ("value" in names):
        raise UsageError(f"{where}: bad pattern: a group named key needs one named value, and the other way round")
    return compiled, "key" in names


class MetricParser:
    """Points from a log's bytes as they arrive.

    ``patterns``: the project's regexes (``load_patterns``); ``offset``: where in
    the log the first byte fed lies (a line's start)."""

    def __init__(self, patterns: Sequence[str] = (), offset: int = 0) -> None:
        self._patterns = [_compile(p, f"metrics pattern {i}") for i, p in enumerate(patterns, 1)]
        self._tail = bytearray()  # the line being received
        self._at = offset  # the log offset after the last byte fed
        self._skipping = False  # the line being received is over LINE_LIMIT: dropped up to its end
        self._counts: dict[str, float] = {}  # name -> values of it seen so far

    @property
    def position(self) -> int:
        """The log offset after the last byte fed."""
        return self._at

    def feed(self, data: bytes) -> list[Point]:
        """The points of the lines ``data`` completes (any split: a line may span calls)."""
        out: list[Point] = []
        if not data:
            return out
        data = bytes(data)
        start = self._at
        self._at += len(data)
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut < 0:  # no line ends here
            if not self._skipping:
                self._tail += data
                if len(self._tail) > LINE_LIMIT:
                    self._skipping = True
                    self._tail.clear()
            return out
        if self._skipping:  # drop the long line's rest, up to its end
            first = min(i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0)
            chunk, base = data[first + 1 : cut + 1], start + first + 1
            self._skipping = False
        elif self._tail:
            base = start - len(self._tail)
            self._tail += data[: cut + 1]
            chunk = bytes(self._tail)
        else:
            chunk, base = (data if cut == len(data) - 1 else data[: cut + 1]), start
        self._tail = bytearray(data[cut + 1 :])
        if len(self._tail) > LINE_LIMIT:
            self._skipping = True
            self._tail.clear()
        if chunk:
            self._parse(chunk, base, out)
        return out

    def flush(self) -> list[Point]:
        """The points of the last line, which has no line end (at the job's end)."""
        out: list[Point] = []
        if self._tail and not self._skipping:
            self._parse(bytes(self._tail), self._at - len(self._tail), out)
        self._tail.clear()
        self._skipping = False
        return out

    def _parse(self, chunk: bytes, base: int, out: list[Point]) -> None:
        """The points of ``chunk``'s lines (it ends at a line's end, or is a last line
        without one), ``chunk`` lying at ``base`` in the log."""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r", b"\n")  # same length: offsets hold
        text = chunk.decode("latin-1")  # a character a byte: indices are offsets
        if self._patterns:  # every line may match one
            at = 0
            lines = text.split("\n")
            if text.endswith("\n"):
                lines.pop()
            hit = _HIT.search
            for line in lines:
                size = len(line)
                if size <= LINE_LIMIT:
                    self._line(line, base + at, out, hit(line) is not None)
                at += size + 1
            return
        # The hot loop: lines of pairs alone are parsed here, with no call per line
        # and no list but findall's (the same rules as _line, which does the rest).
        search, rfind, findall, x_ranks = _HIT.search, text.rfind, _PAIR.findall, _X_RANK
        counts, append, point, find, new = self._counts, out.append, _NewPoint, text.find, object.__new__
        special = "{" in text or "\x1b" in text  # then some lines may need _line
        at = 0
        while (match := search(text, at)) is not None:
            start = rfind("\n", 0, match.start()) + 1
            end = match.end()  # the line's end
            at = end + 1
            if end - start > LINE_LIMIT:
                continue
            if special and (find("{", start, end) >= 0 or find("\x1b", start, end) >= 0):
                self._line(text[start:end], base + start, out, True)
                continue
            # One pass: points take the x seen so far; an x (or a finer one) that comes
            # after some of them (``loss=0.3 step=10``) remakes those.
            first, x, x_rank, offset = len(out), None, 9, base + start
            for key, raw, total in findall(text, start, end):  # its lookbehind sees the '\n' before start
                rank = x_ranks.get(key)
                if rank is not None:
                    if rank < x_rank:
                        value = float(raw)
                        if value - value == 0:
                            x, x_rank = value, rank
                            if len(out) > first:
                                out[first:] = [point(p.key, x, p.value, offset) for p in out[first:]]
                    continue
                if total:
                    continue
                value = float(raw)
                if value - value != 0:  # inf (or past float's range)
                    continue
                count = counts.get(key)
                if count is None:
                    if len(counts) >= MAX_KEYS:
                        continue
                    count = 0.0
                counts[key] = count + 1.0
                made = new(point)  # _NewPoint's __init__ written out: no call
                made.key = key
                made.step = count if x is None else x
                made.value = value
                made.offset = offset
                made.__class__ = Point
                append(made)
            if len(out) == first:
                if x is not None:  # x keys alone: they are the metrics
                    self._line(text[start:end], offset, out, True)
            elif x is None and (x := _x_word(text[start:end])) is not None:
                out[first:] = [point(p.key, x, p.value, offset) for p in out[first:]]

    def _emit(self, metrics: list[tuple[str, float]], x: float | None, offset: int, out: list[Point]) -> None:
        counts = self._counts
        for key, value in metrics:
            count = counts.get(key)
            if count is None:
                if len(counts) >= MAX_KEYS:
                    continue
                count = 0.0
            counts[key] = count + 1.0
            out.append(_NewPoint(key, count if x is None else x, value, offset))

    def _line(self, line: str, offset: int, out: list[Point], builtin: bool) -> None:
        """Append the points of ``line`` (Latin-1 text of its bytes) to ``out``;
        ``builtin``: whether it may hold one of the built-in shapes."""
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        metrics: list[tuple[str, float]] = []
        xs: list[tuple[str, float]] = []  # the line's x keys and their values
        x, x_rank = None, 9
        found: list[tuple[str, Any]] = []  # (key, a number or its text)
        if builtin:
            obj = None
            if "{" in line and (head := line.lstrip())[:1] == "{":
                try:
                    obj = json.loads(head if head.isascii() else head.encode("latin-1").decode("utf-8", "replace"))
                except (ValueError, RecursionError):
                    pass
            if type(obj) is dict:
                found = [(key, value) for key, value in obj.items() if type(value) in (int, float)]
                found += [(f"{key}.{k}", v) for key, value in obj.items() if type(value) is dict
                          for k, v in value.items() if type(v) in (int, float)]
            else:
                found = [(key, raw) for key, raw, total in _PAIR.findall(line)
                         if not total or key in _X_RANK]
        if self._patterns:
            found += self._pattern_pairs(line, {key for key, _ in found})
        for key, raw in found:
            try:
                value = float(raw)
            except OverflowError:  # a JSON int past float's range
                continue
            if value - value != 0:  # NaN, inf
                continue
            rank = _X_RANK.get(key)
            if rank is None:
                metrics.append((key, value))
            else:
                xs.append((key, value))
                if rank < x_rank:
                    x, x_rank = value, rank
        if not metrics:
            metrics = xs
        elif x is None:
            x = _x_word(line)
        self._emit(metrics, x, offset, out)

    def _pattern_pairs(self, line: str, taken: set[str]) -> list[tuple[str, str]]:
        """What the project's patterns find in ``line``: (key, the number's text) for
        each named group that holds a number, but the keys in ``taken`` (found in
        the line already) and those an earlier group took."""
        text = line if line.isascii() else line.encode("latin-1").decode("utf-8", "replace")
        pairs = []
        for pattern, keyed in self._patterns:
            for match in pattern.finditer(text):
                found = match.groupdict()
                named = [(found["key"], found["value"])] if keyed else found.items()
                for key, raw in named:
                    if not key or raw is None or key in taken:
                        continue
                    number = _NUMBER_ONLY.fullmatch(raw)
                    if number is not None and (value := float(number.group(1))) - value == 0:
                        taken.add(key)
                        pairs.append((key, number.group(1)))
        return pairs


def _x_word(line: str) -> float | None:
    """The x of a line that says ``Epoch 3/400``, ``Step [100/600]``... (the finest
    if several), or None."""
    lower = line.lower()
    if "step" not in lower and "epoch" not in lower and "iter" not in lower:
        return None
    x, x_rank = None, 9
    for word, raw in _X_WORD.findall(line):
        rank = _X_RANK[word.lower()]
        if rank < x_rank:
            x, x_rank = float(raw), rank
    return x
