"""servekit's benchmarks: launcher overhead, start-up, ceilings, CPU-bound work, memory.

Run everything with ``make bench`` (or ``python -m benchmarks.run``); the results go to
``BENCHMARKS.md`` at the repository root and ``benchmarks/results/``.
"""
