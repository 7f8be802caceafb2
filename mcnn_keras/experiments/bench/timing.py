"""Timing a step: seconds per call, and the measured matmul peak to compare with.

Usage:

    seconds = timed(lambda: float(step()), count=10)     # one entry per call
    best, median = matmul_peak_gflops("float32")         # GFLOP/s of a 4096^2 matmul
"""

import statistics
import time


def timed(step, count):
    """Seconds of each of `count` calls of `step`."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(dtype, size=4096, repeats=5, min_seconds=1.0):
    """(best, median) GFLOP/s of an n x n TensorFlow matmul in the dtype's compute
    type, over at least `repeats` calls and `min_seconds`.

    The best call is the peak: other processes only ever slow a call down (a
    median taken under load made a layer look 3.6x faster than the peak).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    kind = tf.bfloat16 if dtype == "mixed_bfloat16" else tf.float32
    a = tf.cast(tf.random.stateless_uniform((size, size), (1, 2)), kind)
    b = tf.cast(tf.random.stateless_uniform((size, size), (3, 4)), kind)
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
    float(matmul(a, b))  # trace and warm up
    times = timed(lambda: float(matmul(a, b)), repeats)
    while sum(times) < min_seconds:
        times += timed(lambda: float(matmul(a, b)), repeats)
    flops = 2 * size**3 / 1e9
    return flops / min(times), flops / statistics.median(times)
