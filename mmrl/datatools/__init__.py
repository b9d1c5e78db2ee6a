"""Dataset tooling, kept out of runs: ``prepare`` (download and lay out), ``verify`` (check a
folder against its spec), ``synthetic`` (tiny copies of the real layouts, for tests and
benchmarks) and the ``mmrl data`` commands. Runs import :mod:`mmrl.datasets` only."""
