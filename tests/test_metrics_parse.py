"""Metrics from a log's bytes (simtui.metrics): the shapes a job prints, the x axis,
what is not a metric, offsets, split feeds, the project's patterns. Pure and fast:
speed is measured in bench/metrics.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from simtui import metrics
from simtui.errors import UsageError
from simtui.metrics import MetricParser, Point, load_patterns


def parse(text: str | bytes, patterns=(), offset: int = 0) -> list[Point]:
    data = text.encode() if isinstance(text, str) else text
    parser = MetricParser(patterns, offset=offset)
    return parser.feed(data) + parser.flush()


def triples(text: str | bytes, patterns=()) -> list[tuple[str, float, float]]:
    return [(p.key, p.step, p.value) for p in parse(text, patterns)]


def test_key_value_pairs_take_step_as_x():
    assert triples("step=123 loss=0.2345 lr=0.001 acc=0.91\nstep=10, loss=0.3\n") == [
        ("loss", 123, 0.2345), ("lr", 123, 0.001), ("acc", 123, 0.91), ("loss", 10, 0.3)]


def test_key_colon_value_and_epoch_word():
    assert triples("epoch 3/400 loss=2.5 acc: 0.91 lr=5e-4\n") == [
        ("loss", 3, 2.5), ("acc", 3, 0.91), ("lr", 3, 5e-4)]
    keras = "1875/1875 [==============================] - 3s 2ms/step - loss: 0.2345 - accuracy: 0.9100\n"
    assert triples(keras * 2) == [("loss", 0, 0.2345), ("accuracy", 0, 0.91), ("loss", 1, 0.2345),
                                  ("accuracy", 1, 0.91)]


def test_x_words_in_text():
    assert triples("Epoch [1/10], Step [100/600], Loss: 0.2100\n") == [("Loss", 100, 0.21)]  # the finest x
    assert triples("Epoch 3: 100%|#####| 50/50 [00:10<00:00, loss=0.3, acc=91.5%]\n") == [
        ("loss", 3, 0.3), ("acc", 3, 91.5)]
    assert triples("Iteration 7 | train_loss: 1.5\n") == [("train_loss", 7, 1.5)]
    assert triples("Epoch 3/400\n") == []  # the word alone makes no metric


def test_numbers_in_every_notation():
    assert triples("a=1 b=-2 c=+3.5 d=.25 e=1e-3 f=2.5E+4 g=7. h = 8\n") == [
        ("a", 0, 1), ("b", 0, -2), ("c", 0, 3.5), ("d", 0, 0.25), ("e", 0, 1e-3), ("f", 0, 2.5e4), ("g", 0, 7),
        ("h", 0, 8)]


def test_keys_with_slashes_dots_and_dashes():
    assert triples("step=2 val/acc=0.5 train.loss=1.25 top-1=0.7 _x=1\n") == [
        ("val/acc", 2, 0.5), ("train.loss", 2, 1.25), ("top-1", 2, 0.7), ("_x", 2, 1)]


def test_json_object_lines():
    line = {"step": 3, "loss": 0.25, "lr": 1e-3, "n": 7, "done": True, "name": "run", "tags": [1, 2],
            "val": {"acc": 0.9, "note": "x", "deep": {"a": 1}}, "big": 10**400}
    assert triples(json.dumps(line) + "\n") == [("loss", 3, 0.25), ("lr", 3, 1e-3), ("n", 3, 7), ("val.acc", 3, 0.9)]
    assert triples('  {"epoch": 1, "loss": NaN, "acc": Infinity, "f1": 0.5}  \n') == [("f1", 1, 0.5)]
    assert triples('{"loss": 0.25} and loss=0.5\n') == [("loss", 0, 0.25), ("loss", 1, 0.5)]  # not JSON: pairs
    assert triples('{"λ": 0.5, "step": 2}\n'.encode()) == [("λ", 2, 0.5)]  # UTF-8 names


def test_python_dict_reprs():
    line = "{'loss': 0.3, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.1}\n"
    assert triples(line) == [("loss", 0.1, 0.3), ("grad_norm", 0.1, 1.2), ("learning_rate", 0.1, 5e-05)]


def test_x_keys_alone_are_the_metrics():
    assert triples("step=10\n") == [("step", 10, 10)]
    assert triples("epoch=3 step=1200\n") == [("epoch", 1200, 3), ("step", 1200, 1200)]
    assert triples('{"step": 4}\n') == [("step", 4, 4)]
    assert triples("step=5 ratio=3/4\n") == [("step", 5, 5)]


def test_the_finest_x_wins_wherever_it_is():
    assert triples("loss=0.5 epoch=2 acc=0.7 step=300\n") == [("loss", 300, 0.5), ("acc", 300, 0.7)]
    assert triples("Step=4 EPOCH=1 loss=1\n") == [("loss", 4, 1)]  # spelt with capitals
    assert triples("epoch=3/400 loss=1\n") == [("loss", 3, 1)]  # N/M: N, for an x key


def test_counts_are_the_x_without_one():
    text = "loss=1\nloss=2 acc=0.5\nstep=50 loss=3\nacc: 0.6\nloss=4\n"
    assert triples(text) == [("loss", 0, 1), ("loss", 1, 2), ("acc", 0, 0.5), ("loss", 50, 3), ("acc", 1, 0.6),
                             ("loss", 3, 4)]


@pytest.mark.parametrize("line", [
    "12:30:01 starting",
    "time: 12:30:01",
    "ETA: 0:01:23 remaining",
    "Date: 2024-01-05",
    "2024-01-05T12:30:01 INFO ready",
    "fetching http://x:8080/path and ssh://host:22",
    "listening on localhost:8080 and node1:29500",
    "status: ready",
    "model: resnet50",
    "version=1.2.3 ip=10.0.0.1",
    "took=3.2s size=12MB",
    "loss=nan acc=inf x=1e999 y=-inf",
    "--lr=0.1 --epochs=5",
    "ratio=3/4 progress: 50/100",
    "path=/data/x:3",
    "a==3 b=>4",
    "done=True name=run",
    "INFO: nothing here",
])
def test_what_is_not_a_metric(line):
    assert triples(line + "\n") == []


def test_after_a_logging_prefix():
    assert triples("INFO:train:step=3 loss: 0.5\n[rank0]: acc=0.25\n") == [("loss", 3, 0.5), ("acc", 0, 0.25)]


def test_what_ends_a_value():
    assert triples("loss=0.3, acc=0.9; f1=0.8) (p=0.7] |r=0.6| done.\n") == [
        ("loss", 0, 0.3), ("acc", 0, 0.9), ("f1", 0, 0.8), ("p", 0, 0.7), ("r", 0, 0.6)]
    assert triples("final loss=0.25.\n") == [("loss", 0, 0.25)]  # a sentence's full stop


def test_colours_are_removed_first():
    line = "\x1b[32mstep\x1b[0m=7 \x1b[1mloss\x1b[0m=\x1b[33m0.5\x1b[0m acc: \x1b[1;33m0.75\x1b[0m\n"
    assert triples(line) == [("loss", 7, 0.5), ("acc", 7, 0.75)]
    assert triples('\x1b[36m{"step": 2, "loss": 1.5}\x1b[0m\n') == [("loss", 2, 1.5)]


def test_offsets_are_bytes_of_line_starts():
    text = "héllo wörld\nloss=1 acc=2\n\n∑ step=3 loss=4\nplain\nloss=5".encode()
    points = parse(text)
    starts = [0, *(i + 1 for i, b in enumerate(text) if b == 0x0A)]
    assert [(p.key, p.offset) for p in points] == [("loss", starts[1]), ("acc", starts[1]), ("loss", starts[3]),
                                                   ("loss", starts[5])]
    assert text[points[2].offset:].startswith("∑ step=3".encode())
    assert [p.offset for p in parse(text, offset=1000)] == [p.offset + 1000 for p in points]


def test_carriage_returns_end_lines():
    text = b"ep 1 loss=0.9\rep 1 loss=0.8\rep 1 loss=0.7\r\nstep=2 acc=0.5\r\n"
    points = parse(text)
    assert [(p.key, p.step, p.value, p.offset) for p in points] == [
        ("loss", 0, 0.9, 0), ("loss", 1, 0.8, 14), ("loss", 2, 0.7, 28), ("acc", 2, 0.5, 43)]


SAMPLE = (
    "starting run 12:30:01 at http://x:8080\n"
    "step=1 loss=2.5 lr=1e-3\r\n"
    "\x1b[32mepoch 1/3\x1b[0m loss: 2.25 - acc: 0.5\n"
    + json.dumps({"step": 2, "loss": 2.0, "val": {"acc": 0.6}}) + "\n"
    "{'loss': 1.75, 'epoch': 0.5}\n"
    "héllo wörld λ=1 loss=1.5\n"
    "loss=" + "9" * (70 * 1024) + "\n"  # over the line limit: skipped
    "tqdm 10% loss=1.25\rtqdm 20% loss=1.0\r"
    "Iter 9 | train 0.125\n"
    "last loss=0.5"
)


@pytest.mark.parametrize("patterns", [(), (r"^Iter (?P<iter>\d+) \| train (?P<train>\S+)",)])
def test_any_split_gives_the_same_points(patterns):
    data = SAMPLE.encode()
    whole = parse(data, patterns)
    assert len(whole) > 10
    byte_by_byte = MetricParser(patterns)
    points = [p for i in range(len(data)) for p in byte_by_byte.feed(data[i : i + 1])] + byte_by_byte.flush()
    assert points == whole
    for size in (2, 7, 100, 4096, 65536):
        parser = MetricParser(patterns)
        points = [p for i in range(0, len(data), size) for p in parser.feed(data[i : i + size])] + parser.flush()
        assert points == whole, size
    assert all(data[p.offset :].split(b"\n")[0] for p in whole)  # each offset is a line's start
    assert all(p.offset == 0 or data[p.offset - 1 : p.offset] in (b"\n", b"\r") for p in whole)


def test_a_line_arrives_in_pieces():
    parser = MetricParser()
    assert parser.feed(b"step=3 lo") == []
    assert parser.feed(b"ss=0.5 ac") == []
    assert parser.feed(b"c=0.25\nloss=") == [Point("loss", 3, 0.5, 0), Point("acc", 3, 0.25, 0)]
    assert parser.position == 30
    assert parser.feed(b"") == []


def test_flush_takes_the_last_line_without_its_newline():
    parser = MetricParser(offset=10)
    assert parser.feed(b"loss=1\nloss=2") == [Point("loss", 0, 1, 10)]
    assert parser.flush() == [Point("loss", 1, 2, 17)]
    assert parser.flush() == []
    assert parser.feed(b"loss=3\n") == [Point("loss", 2, 3, 23)]


def test_long_lines_are_skipped_and_not_kept():
    long = b"loss=" + b"1 " * (40 * 1024) + b"\n"  # 80 KiB
    data = b"loss=1\n" + long + b"loss=2\n" + long[:-1]
    assert [(p.value, p.offset) for p in parse(data)] == [(1, 0), (2, 7 + len(long))]
    parser = MetricParser()
    points = [p for i in range(0, len(data), 1000) for p in parser.feed(data[i : i + 1000])]
    assert len(parser._tail) <= metrics.LINE_LIMIT
    assert points + parser.flush() == parse(data)
    at_limit = b"x" * (metrics.LINE_LIMIT - 4) + b" a=1\n"  # the limit, newline aside: taken
    assert [p.key for p in parse(at_limit + b"x" + at_limit)] == ["a"]
    parser = MetricParser()
    assert [p.offset for i in range(0, 2 * len(at_limit) + 1, 999)
            for p in parser.feed((at_limit + b"x" + at_limit)[i : i + 999])] == [0]


def test_new_names_stop_at_the_bound(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_KEYS", 3)
    assert [p.key for p in parse("a=1 b=2\nc=3 d=4\na=5 e=6\n")] == ["a", "b", "c", "a"]


def test_points_are_frozen_dataclasses():
    point = parse("step=2 loss=0.5\n")[0]
    assert type(point) is Point and point == Point("loss", 2.0, 0.5, 0)
    assert dataclasses.asdict(point) == {"key": "loss", "step": 2.0, "value": 0.5, "offset": 0}
    assert hash(point) == hash(Point("loss", 2.0, 0.5, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.value = 1.0  # type: ignore[misc]
    assert metrics.X_KEYS == ("step", "epoch", "iter", "iteration")


def test_load_patterns():
    text = "# metrics of the solver\n\n  ^res (?P<residual>\\S+)  \n#(?P<no>\\d)\nit=(?P<iter>\\d+)\n"
    assert load_patterns(text) == [r"^res (?P<residual>\S+)", r"it=(?P<iter>\d+)"]
    assert load_patterns("") == []


@pytest.mark.parametrize("text,message", [
    ("# one\n^ok (?P<a>\\d+)\n(?P<b>\\d+\n",
     "`.simtui/metrics` line 3: bad pattern: missing ), unterminated subpattern"),
    ("[0-9]+\n", "`.simtui/metrics` line 1: bad pattern: no named group"),
    ("(?P<key>\\w+)\n", "`.simtui/metrics` line 1: bad pattern: a group named key needs one named value"),
])
def test_bad_patterns_name_their_line(text, message):
    with pytest.raises(UsageError) as caught:
        load_patterns(text)
    assert str(caught.value).startswith(message)
    assert caught.value.exit_code == 2


def test_project_patterns_add_shapes():
    patterns = load_patterns(
        "^Iter (?P<iter>\\d+) \\| train (?P<train>\\S+) \\| (?P<note>\\w+)\n"
        "(?P<key>[a-z]+) is (?P<value>\\S+)\n"
        "résidu (?P<résidu>\\S+)\n"
        "loss (?P<loss>\\S+)\n")
    text = ("Iter 7 | train 0.5 | fine\n"
            "Iter 8 | train nan | fine\n"
            "energy is -1.5, pressure is 2e5\n"
            "résidu 1e-6\n"
            "loss 0.4 loss=0.3\n"
            "\x1b[1mIter 9\x1b[0m | train 0.25 | ok\n")
    assert triples(text, patterns) == [
        ("train", 7, 0.5), ("iter", 8, 8),  # its x alone
        ("energy", 0, -1.5), ("pressure", 0, 2e5), ("résidu", 0, 1e-6),
        ("loss", 0, 0.3),  # the built-in shapes first; a name is not taken twice from one line
        ("train", 9, 0.25)]


def test_a_parser_checks_its_patterns():
    with pytest.raises(UsageError, match="metrics pattern 2: bad pattern"):
        MetricParser(["(?P<a>x)", "(?P<b>"])
