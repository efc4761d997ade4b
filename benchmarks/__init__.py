"""flower_edge.bench: flower-bench, one table of accuracy parity and latency across every format.

    flower-bench runs/flower.pth --data flowers/ --split valid --out runs/bench
    python -m flower_edge.bench runs/flower.pth --data flowers/      # the same

The scripts beside it (train_recipe.py, export_int8.py, cold_start.py, ...) reproduce the figures of
benchmarks/README.md; ``reproduce.py`` regenerates its flower-bench table.
"""
