"""Measurements of the system: benchmarks, time-to-train and the scaling model.

`bench/` (`mcnn-bench`: images/s, matmul peak, memory, per-layer times),
`ttt/` (`mcnn-ttt`: time-to-train experiments and their report),
`scaling_model` (images/s and time-to-train on N nodes from measured
constants) with `scaling_report` and `scaling_plot` (its rows and figure). The top floor of the library: it may import all the others.
"""
