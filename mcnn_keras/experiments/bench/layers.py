"""`mcnn-bench --mode=layers`: forward + backward time of every conv and dense layer alone.

`layer_probes(setup, peak)` builds the model of a `bench.Setup` and times each
layer with trainable weights on random input of its real shape at the setup's
batch: the median of `setup.steps` calls of one compiled forward + backward
(the input gradient only where training computes it, `_depends_on_weights`).
Each dict has the layer's FLOPs, milliseconds, GFLOP/s, fraction of the
machine's matmul `peak` (GFLOP/s) and share of the model's training FLOPs.
`bench.run` adds the common fields (cpu, threads, the setup).

Usage:

    setup = bench.Setup(height=1024, width=1280, mode="layers")
    for line in layer_probes(setup, peak=2000.0):  # peak: bench.matmul_peak_gflops
        print(line["layer"], line["ms"], line["fraction_of_peak"])
"""

import math
import statistics

from mcnn_keras.experiments.bench.timing import timed
from mcnn_keras.model.topology import model_cost


def _depends_on_weights(model):
    """{layer name: whether its input depends on trainable weights} (then its
    backward pass computes an input gradient too)."""
    import keras  # pylint: disable=import-outside-toplevel
    downstream, depends = set(), {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        depends[layer.name] = any(id(t) in downstream for t in inputs)
        if depends[layer.name] or layer.trainable_weights:
            downstream.add(id(layer.output))
    return depends


def layer_probes(setup, peak):
    """One dict per conv/dense layer: forward + backward alone, at the setup's batch."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
    model = build_model(setup.height, setup.width, dtype_policy=setup.dtype,
                        space_to_depth=setup.space_to_depth)
    depends = _depends_on_weights(model)
    total_flops = 3 * model_cost(setup.height, setup.width).forward_flops * setup.batch_size
    lines = []
    for layer in model.layers:
        if not layer.trainable_weights:
            continue
        shape = (setup.batch_size,) + tuple(layer.input.shape[1:])
        out_shape = (setup.batch_size,) + tuple(layer.output.shape[1:])
        kernel = tuple(layer.kernel.shape)
        # Multiply-adds: output values x kernel fan-in (the plain layer's, also when
        # it runs on the space-to-depth image).
        macs = math.prod(out_shape) * math.prod(kernel[:-1])
        # Training skips the input gradient of layers that read the image alone.
        flops = 2 * macs * (3 if depends[layer.name] else 2)
        x = tf.cast(tf.random.stateless_uniform(shape, (5, 6)), layer.compute_dtype)
        dy = tf.cast(tf.random.stateless_uniform(out_shape, (7, 8)), layer.output.dtype)

        @tf.function
        def probe(x, dy, layer=layer, with_input=depends[layer.name]):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            targets = ([x] if with_input else []) + list(layer.trainable_variables)
            grads = tape.gradient(y, targets, output_gradients=dy)
            return tf.add_n([tf.cast(tf.reshape(g, [-1])[0], tf.float32) for g in grads])
        float(probe(x, dy))
        seconds = statistics.median(timed(lambda p=probe: float(p(x, dy)), setup.steps))
        rate = flops / seconds / 1e9
        lines.append({"layer": layer.name, "shape": "x".join(map(str, shape)) +
                      f" -> {kernel[-1]}" + (f" k{kernel[0]}" if len(kernel) == 4 else ""),
                      "gflops": flops / 1e9, "ms": seconds * 1e3, "gflops_per_s": rate,
                      "fraction_of_peak": rate / peak,
                      "share_of_model_flops": flops / total_flops})
    return lines
