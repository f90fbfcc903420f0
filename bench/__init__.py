"""Benchmarks: speed lives here, never in tests. Run ``python -m bench --list``.

Each entry is a module exposing ``main(argv=None)`` that prints what it
measured and the ratios against a reference tool.
"""

REGISTRY: dict[str, str] = {
    "ssh": "bench.ssh",
    "sampling": "bench.sampling",
    "records": "bench.records",
    "jobs": "bench.jobs",
    "ui": "bench.ui",
    "sync": "bench.sync",
    "server": "bench.server",
    "soak": "bench.soak",
    "logs": "bench.logs",
    "far": "bench.far",
    "slurm": "bench.slurm",
    "metrics": "bench.metrics",
    "machines": "bench.machines",
}
