"""The multi-scale CNN (M-CNN) as a functional Keras 3 model.

Seven pathways read the same image at scales s = 1, 2, 4, ..., 64: max-pool
s x s, three 5x5 SAME convolutions with ReLU, max-pool (64/s) x (64/s). All end
at H/64 x W/64 and are concatenated (208 channels), merged by a 1x1 conv to
1024 channels, pooled 2x2, flattened and classified by two dense layers.
The figures it must reproduce (parameters, FLOPs, activation bytes at
1024 x 1280 and 724 -> 768) are asserted in tests/test_model.py.

Usage:

    model = mcnn_keras.build_model(1024, 1280)   # 42 577 261 parameters
    logits = model(uint8_images)                 # scaling by 1/255 is inside

The model takes uint8 (or float 0..255) images and scales them by 1/255 as its
first layer, so the same model serves training (raw TFRecord bytes) and the
exported SavedModel (uint8 in). Outputs are float32 logits.
"""

import keras

from mcnn_keras.factored_dense import FactoredDense
# The shape and analytic cost of the network live in topology.py (no
# TensorFlow); re-exported here, where users look for them.
from mcnn_keras.topology import (  # pylint: disable=unused-import
    CONVS_PER_PATHWAY, DENSE_UNITS, FILTERS, KERNEL, MERGE_FILTERS, PADDED_SIZES, SCALES,
    SIZE_MULTIPLE, ModelCost, check_input_size, flat_features, model_cost, padded_size)

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
