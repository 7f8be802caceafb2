"""The multi-scale CNN (M-CNN) as a functional Keras 3 model.

Seven pathways read the same image at scales s = 1, 2, 4, ..., 64: max-pool
s x s, three 5x5 SAME convolutions with ReLU, max-pool (64/s) x (64/s). All end
at H/64 x W/64 and are concatenated (208 channels), merged by a 1x1 conv to
1024 channels, pooled 2x2, flattened and classified by two dense layers.
See docs in `../shared/docs/mcnn-architecture.md`.

Usage:

    model = mcnn_keras.build_model(1024, 1280)   # 42 577 261 parameters
    logits = model(uint8_images)                 # scaling by 1/255 is inside

The model takes uint8 (or float 0..255) images and scales them by 1/255 as its
first layer, so the same model serves training (raw TFRecord bytes) and the
exported SavedModel (uint8 in). Outputs are float32 logits.
"""

import dataclasses

import keras

from mcnn_keras.factored_dense import FactoredDense

SCALES = (1, 2, 4, 8, 16, 32, 64)
FILTERS = (16, 16, 16, 32, 32, 32, 64)
CONVS_PER_PATHWAY = 3
KERNEL = 5
MERGE_FILTERS = 1024
DENSE_UNITS = 512
# Every pathway ends at H/64 x W/64 only if 64 divides the size; with a multiple
# of 128 the final 2x2 pool is exact too (e.g. 256 x 320 floors 4 x 5 to 2 x 2).
SIZE_MULTIPLE = 64
# Dataset B of the paper: 724 x 724 = 1024 / sqrt(2), zero-padded by 22 pixels
# per side, since 724 is no multiple of 128 and the pathways would not align.
PADDED_SIZES = {724: 768}


def padded_size(size):
    """Returns the size the network runs at for an input side of `size`."""
    return PADDED_SIZES.get(size, size)


def check_input_size(height, width):
    """Raises ValueError unless the network can run on height x width."""
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"image {name} must be a positive integer, got {size!r}")
        if padded_size(size) % SIZE_MULTIPLE:
            raise ValueError(
                f"image {name} {size} is not supported: the M-CNN needs a multiple "
                f"of {SIZE_MULTIPLE} (or 724, zero-padded to 768)")


def flat_features(height, width):
    """Inputs of the first dense layer: 81 920 at 1024 x 1280."""
    check_input_size(height, width)
    return (padded_size(height) // 128) * (padded_size(width) // 128) * MERGE_FILTERS


def build_model(height, width, num_classes=13, dtype_policy=None, weight_decay=0.0,
                factored_dense=False, name="mcnn"):
    """Builds the uncompiled functional M-CNN for height x width x 3 images.

    Args:
      height, width: input size; multiples of 64 (128 for an exact final
        pool, as 1024 x 1280), or 724 (zero-padded to 768).
      num_classes: size of the final logits (13 = 12 mechanisms + DMSO).
      dtype_policy: optional Keras dtype policy for the body, e.g.
        "mixed_bfloat16"; the logits are always float32.
      weight_decay: L2 weight decay on every kernel and bias, as the original
        code's `weight_decay * sum(tf.nn.l2_loss(v))` (note its factor 1/2).
      factored_dense: make the first dense layer (98.5 % of the weights) a
        `FactoredDense`, whose gradient is synchronized by all-gathering
        sufficient factors instead of all-reducing it (same weights).
      name: the model name.
    """
    check_input_size(height, width)
    policy = dtype_policy or keras.config.dtype_policy()
    l2 = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    weights = {"kernel_regularizer": l2, "bias_regularizer": l2, "dtype": policy}
    images = keras.Input((height, width, 3), name="images")
    x = keras.layers.Rescaling(1.0 / 255, dtype=policy, name="scale")(images)
    pad_h = (padded_size(height) - height) // 2
    pad_w = (padded_size(width) - width) // 2
    if pad_h or pad_w:
        x = keras.layers.ZeroPadding2D((pad_h, pad_w), dtype=policy, name="pad")(x)

    pathways = []
    for scale, filters in zip(SCALES, FILTERS):
        y = x
        if scale > 1:
            y = keras.layers.MaxPooling2D(scale, dtype=policy, name=f"s{scale}_prepool")(y)
        for i in range(CONVS_PER_PATHWAY):
            y = keras.layers.Conv2D(filters, KERNEL, padding="same", activation="relu",
                                    name=f"s{scale}_conv{i + 1}", **weights)(y)
        post = SCALES[-1] // scale
        if post > 1:
            y = keras.layers.MaxPooling2D(post, dtype=policy, name=f"s{scale}_postpool")(y)
        pathways.append(y)

    x = keras.layers.Concatenate(dtype=policy, name="concat")(pathways)
    x = keras.layers.Conv2D(MERGE_FILTERS, 1, activation="relu", name="mergedSummaryConv",
                            **weights)(x)
    x = keras.layers.MaxPooling2D(2, dtype=policy, name="merge_pool")(x)
    x = keras.layers.Flatten(dtype=policy, name="flatten")(x)
    # The original code computed this ReLU and never used it; we use it.
    dense = FactoredDense if factored_dense else keras.layers.Dense
    x = dense(DENSE_UNITS, activation="relu", name="ip0", **weights)(x)
    logits = keras.layers.Dense(num_classes, name="ip3", **{**weights, "dtype": "float32"})(x)
    return keras.Model(images, logits, name=name)


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


def model_cost(height, width, num_classes=13, bytes_per_value=4):
    """Returns the analytic `ModelCost` of one image at height x width."""
    check_input_size(height, width)
    h, w = padded_size(height), padded_size(width)
    params = flops = conv_values = all_values = 0
    all_values += h * w * 3  # the scaled (and padded) input

    def conv(hh, ww, cin, cout, k):
        nonlocal params, flops, conv_values, all_values
        params += k * k * cin * cout + cout
        flops += 2 * hh * ww * k * k * cin * cout
        conv_values += hh * ww * cout
        all_values += hh * ww * cout

    for scale, filters in zip(SCALES, FILTERS):
        hh, ww, cin = h // scale, w // scale, 3
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
