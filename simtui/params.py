"""Run parameters from a file (JSON, TOML, YAML) or ``key=value`` arguments, and
the merged parameters written back in the file's format for the job to read.

Parameters are kept in the record as JSON, so they must be what JSON holds: no
NaN or Infinity (Python writes them as invalid JSON), nesting at most MAX_DEPTH
deep (deeper input fails the parsers with RecursionError). Anything else is one
UsageError that names the file or argument and the parameter (check_params).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from simtui.errors import UsageError

MAX_DEPTH = 64  # levels of nested tables/lists a parameter set may have


def load_params(path: str | Path) -> dict[str, Any]:
    """Parameters from a JSON, TOML or YAML (.yaml/.yml, needs PyYAML) file.

    The top level must be a table/mapping. A broken file is a UsageError that
    names the file and the line.
    """
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise UsageError(f"{path}: unknown parameter file type; use .json, .toml, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read parameters: {err}") from None
    try:
        data = loader(path, text)
    except RecursionError:
        raise UsageError(f"{path}: parameters nested too deeply (at most {MAX_DEPTH} levels)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: parameters must be a mapping of names to values, not a {type(data).__name__}")
    check_params(data, str(path))
    return data


def check_params(params: Any, where: str = "parameters") -> None:
    """UsageError unless ``params`` is what a record's JSON can hold: finite numbers,
    string keys, nesting at most MAX_DEPTH deep. ``where`` (a file, an argument)
    starts the message."""
    stack: list[tuple[Any, str, int]] = [(params, "", 0)]
    while stack:
        value, name, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UsageError(f"{where}: parameters nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            raise UsageError(f"{where}{': ' + name if name else ''} is {shown}, which JSON cannot hold; give a "
                             f"finite number, or the text \"{shown}\" in quotes")
        if isinstance(value, dict):
            for key, item in reversed(value.items()):  # reversed: the first found is the first written
                if not isinstance(key, str):
                    raise UsageError(f"{where}: {name + '.' if name else ''}{key!r}: parameter names must be text")
                stack.append((item, f"{name}.{key}" if name else key, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{name}[{i}]", depth + 1) for i, item in reversed(list(enumerate(value))))


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)  # NaN and Infinity load (as Python's json has them): check_params names them
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: line {err.lineno}: {err.msg}") from None


def _toml(path: Path, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"^(.*) \(at line (\d+), column \d+\)$", str(err))
        message = f"line {where[2]}: {where[1]}" if where else str(err)
        raise UsageError(f"{path}: {message}") from None


def _yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise UsageError(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml), or give the parameters as JSON or TOML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise UsageError(f"{path}: line {mark.line + 1}: {problem}" if mark else f"{path}: {problem}") from None


_LOADERS = {".json": _json, ".toml": _toml, ".yaml": _yaml, ".yml": _yaml}
FORMATS = {".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


def params_format(path: str | Path | None) -> str:
    """The format of a parameters file by its suffix; json without a file."""
    return FORMATS.get(Path(path).suffix.lower(), "json") if path else "json"


def dump_params(params: dict[str, Any], fmt: str) -> str:
    """The parameters as the text of a ``fmt`` file (json, toml or yaml): what the job reads."""
    if fmt == "toml":
        import tomli_w

        try:
            return tomli_w.dumps(params)
        except TypeError as err:  # TOML has no null, and no non-string keys
            raise UsageError(f"parameters cannot be written as TOML ({err}); give a JSON or YAML file") from None
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(params, sort_keys=False, allow_unicode=True)
    return json.dumps(params, indent=2, ensure_ascii=False) + "\n"


def parse_param_args(args: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["lr=0.1", "name=run 1", "layers=[64, 64]"]`` -> parameters: a value that
    parses as a JSON literal is that value, anything else stays a string."""
    params: dict[str, Any] = {}
    for arg in args:
        key, sep, raw = arg.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"parameter {arg!r}: expected key=value")
        where = f"parameter {key.strip()!r}"
        try:
            params[key.strip()] = json.loads(raw)
        except RecursionError:
            raise UsageError(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)") from None
        except ValueError:
            params[key.strip()] = raw
        check_params(params[key.strip()], where)  # NaN, Infinity, nesting
    return params


_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?:\.\.\s*(\d+)\s*)?$")


def sweep_axes(args: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``["lr=0.1,0.01", "seed=1..3", "act=relu"]`` -> each key's values, in order: a
    comma-separated list (each value as ``parse_param_args`` takes it), or a range of
    whole numbers ``A..B`` (both ends in; ``A..B..STEP``)."""
    axes: dict[str, list[Any]] = {}
    for arg in args:
        key, sep, raw = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"sweep parameter {arg!r}: expected key=v1,v2,... or key=A..B")
        if key in axes:
            raise UsageError(f"sweep parameter {key!r} is given twice: list its values once, comma-separated")
        found = _RANGE.match(raw)
        if found:
            start, end, step = int(found[1]), int(found[2]), int(found[3] or 1)
            if step < 1 or end < start:
                raise UsageError(f"sweep parameter {key!r}: range {raw!r} is empty (A..B with A <= B, step >= 1)")
            axes[key] = list(range(start, end + 1, step))
        else:
            axes[key] = [parse_param_args([f"{key}={value}"])[key] for value in raw.split(",")]
    return axes


def sweep_points(axes: dict[str, list[Any]], zipped: bool = False) -> list[dict[str, Any]]:
    """Every combination of the axes' values (the first key varying slowest), or with
    ``zipped`` the first values together, then the second, ... (equal lengths)."""
    if not axes:
        raise UsageError("a sweep needs at least one -p KEY=VALUES")
    keys = list(axes)
    if zipped:
        lengths = {key: len(values) for key, values in axes.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            raise UsageError(f"--zip needs as many values for each parameter ({shown})")
        return [dict(zip(keys, values)) for values in zip(*axes.values())]
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]
