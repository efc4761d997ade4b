"""flower_edge.bench: flower-bench, one table of accuracy parity and latency across every format.

    flower-bench runs/flower.pth --data flowers/ --split valid --out runs/bench
    python -m flower_edge.bench runs/flower.pth --data flowers/      # the same

The package is small: the measurement (``bench.py``), its outputs (``report.py``, ``plot.py``), the
fresh process a cold start is timed in (``coldstart.py``) and the command (``cli.py``). The scripts
that reproduce the other figures of benchmarks/README.md live in ``benchmarks/scripts/`` and are not
installed; ``scripts/reproduce.py`` regenerates the flower-bench table.
"""
