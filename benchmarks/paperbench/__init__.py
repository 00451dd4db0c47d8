"""The paper benchmark (benchmarks/paper.py) as a package: profiles, splits, plan, runs, stats, render, meta, cli."""
