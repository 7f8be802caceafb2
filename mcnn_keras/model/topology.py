"""The M-CNN's topology and analytic cost, without TensorFlow.

Everything that is arithmetic on the network's shape: the pathways' scales and
filters, the first dense layer's fan-in, the analytic `model_cost` (parameters, FLOPs,
activation bytes), and whether the big dense layer's gradient should travel
as sufficient factors (`use_factors`). `model.py` builds the Keras graph from
these numbers; the scaling model and `--help` use them without importing
TensorFlow.

Usage:

    cost = model_cost(1024, 1280)        # 42 577 261 parameters, 51.4 GFLOP forward
    model_cost(1080, 1088, channels=5)   # Cell Painting: five stains in
    flat_features(1024, 1280)            # 81 920 inputs of the first dense layer
    use_factors("auto", 8, 81920, 512)   # True: factors are 60x smaller at G = 8
"""

import dataclasses

from mcnn_keras.core.image_size import check_input_size, padded_size

SCALES = (1, 2, 4, 8, 16, 32, 64)
FILTERS = (16, 16, 16, 32, 32, 32, 64)
CONVS_PER_PATHWAY = 3
KERNEL = 5
MERGE_FILTERS = 1024
DENSE_UNITS = 512
def check_channels(channels):
    """Raises ValueError unless `channels` (the image's stains) is an int >= 1."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be an integer >= 1 (3 for BBBC021, 5 for Cell "
                         f"Painting), got {channels!r}")


def first_conv_weights(channels):
    """Kernel weights of the seven pathways' first convolutions that read the image:
    each takes `channels` inputs, so a channel more adds this many parameters."""
    return sum(KERNEL * KERNEL * channels * filters for filters in FILTERS)


def flat_features(height, width):
    """Inputs of the first dense layer: 81 920 at 1024 x 1280."""
    check_input_size(height, width)
    return (padded_size(height) // 128) * (padded_size(width) // 128) * MERGE_FILTERS


# Modes of the `--dense_gradient` flag (see factored_dense.py).
DENSE_GRADIENT_MODES = ("auto", "factors", "allreduce")


def use_factors(mode, global_batch, fan_in, fan_out):
    """Whether a fan_in x fan_out dense layer should sync by sufficient factors.

    "auto" picks them when the all-gathered factors of the global batch are
    smaller than the gradient itself.
    """
    if mode not in DENSE_GRADIENT_MODES:
        raise ValueError(f"dense_gradient must be one of {', '.join(DENSE_GRADIENT_MODES)}, "
                         f"got {mode!r}")
    if mode == "auto":
        return global_batch * (fan_in + fan_out) < fan_in * fan_out
    return mode == "factors"


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Analytic per-image cost of the M-CNN forward pass."""

    parameters: int
    forward_flops: int  # 2 x multiply-accumulates of convs and dense layers
    conv_activation_bytes: int  # one float32 tensor per conv (the paper's Fig. 2)
    all_activation_bytes: int  # every layer output (pools, concat, dense, ...)

    @property
    def training_flops(self):
        return 3 * self.forward_flops


def model_cost(height, width, num_classes=13, bytes_per_value=4, channels=3):
    """Returns the analytic `ModelCost` of one height x width x channels image."""
    check_input_size(height, width)
    check_channels(channels)
    h, w = padded_size(height), padded_size(width)
    params = flops = conv_values = all_values = 0
    all_values += h * w * channels  # the scaled (and padded) input

    def conv(hh, ww, cin, cout, k):
        nonlocal params, flops, conv_values, all_values
        params += k * k * cin * cout + cout
        flops += 2 * hh * ww * k * k * cin * cout
        conv_values += hh * ww * cout
        all_values += hh * ww * cout

    for scale, filters in zip(SCALES, FILTERS):
        hh, ww, cin = h // scale, w // scale, channels
        if scale > 1:
            all_values += hh * ww * cin
        for _ in range(CONVS_PER_PATHWAY):
            conv(hh, ww, cin, filters, KERNEL)
            cin = filters
        if scale < SCALES[-1]:
            all_values += (h // 64) * (w // 64) * filters
    concat = sum(FILTERS)
    all_values += (h // 64) * (w // 64) * concat
    conv(h // 64, w // 64, concat, MERGE_FILTERS, 1)
    flat = flat_features(height, width)
    all_values += 2 * flat  # pool, flatten
    for fan_in, fan_out in ((flat, DENSE_UNITS), (DENSE_UNITS, num_classes)):
        params += fan_in * fan_out + fan_out
        flops += 2 * fan_in * fan_out
        all_values += fan_out
    return ModelCost(params, flops, conv_values * bytes_per_value,
                     all_values * bytes_per_value)
