"""simtui: run simulations and training jobs on several machines over SSH."""

__version__ = "0.1.0"
