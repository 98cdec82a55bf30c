"""Run the benchmark: ``python -m bench --help``."""

from __future__ import annotations

from .run import main

main()
