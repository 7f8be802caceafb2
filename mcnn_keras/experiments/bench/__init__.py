"""`mcnn-bench`: what a step, the input pipeline and each layer cost on this CPU.

`timing` (seconds per call, the measured matmul peak), `layers` (forward +
backward time of each layer alone), `throughput` (the synthetic, pipeline,
input-only and layers modes and worker sweeps; JSON lines and a plot). A new
benchmark is a mode here, or a module of this package called by `mcnn-bench`.
"""
