"""``python -m bench [NAME...] [-- ARGS...]``: run every registered bench, or the
named ones, passing ARGS to each; ``--list`` names them. Exits 1 when a bench is
missing or fails, after running the others."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from bench import REGISTRY


def run(name: str, args: list[str]) -> bool:
    module_name = REGISTRY[name]
    print(f"== {name} ({module_name})", flush=True)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"bench: {name}: module {module_name} is missing (registered but not written yet?)")
        return False
    try:
        module.main(args)
    except Exception:  # one broken bench must not stop the others
        traceback.print_exc()
        print(f"bench: {name}: failed")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benches to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the registered benches")
    options = parser.parse_args(own)
    if options.list:
        for name, module in REGISTRY.items():
            print(f"{name}\t{module}")
        return 0
    unknown = [n for n in options.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)} (known: {', '.join(REGISTRY)})")
    results = [run(name, extra) for name in options.names or REGISTRY]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
