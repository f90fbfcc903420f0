"""simtui: run simulations and training jobs on several machines over SSH.

The library: ``simtui.connect()`` (the client of the local simtui server that the
CLI and the dashboard use: run, follow, kill, rerun, reproduce, outputs, sync,
push, pull, samples; ``async with`` or plain ``with``) and ``simtui.records(...)``
(the records as flat rows or a pandas DataFrame). Both are imported on first use,
so ``import simtui`` stays cheap.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it, imported when the name is first used
_LAZY = {"records": "simtui.store.frame", "connect": "simtui.client"}

if TYPE_CHECKING:
    from simtui.client import connect
    from simtui.store.frame import records


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'simtui' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
