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

Rematerialization (`build_model(..., remat="full_res")`, `--remat`): the seven
pathways become one `Pathways` layer that runs the chosen ones under a custom
gradient (`_recomputed`): their activations are not kept for the backward
pass but recomputed there, one image at a time, so the full-resolution
pathway's 74 % of the activations shrink to one image's worth. Same layers,
names, weights and weight order as the plain model, so checkpoints load either
way. (`keras.RematScope` fails on the TensorFlow backend, keras-team/keras#21207,
and `keras.remat` recomputes a whole batch at once.)
"""

import keras
import tensorflow as tf

from mcnn_keras.model import space_to_depth as s2d
from mcnn_keras.model.factored_dense import FactoredDense
from mcnn_keras.model.memory import remat_scales
# The shape and analytic cost of the network: topology.py (no TensorFlow).
from mcnn_keras.core.image_size import check_input_size, padded_size
from mcnn_keras.model.topology import (
    CONVS_PER_PATHWAY, DENSE_UNITS, FILTERS, KERNEL, MERGE_FILTERS, SCALES, check_channels)

def _pathway_layers(scale, filters, policy, weights, space_to_depth=False):
    """The layers of pathway `scale`, in order: pre-pool, three convs, post-pool
    (with `space_to_depth`: to depth, three convs on it, post-pool from it)."""
    layers = []
    if scale > 1:
        layers.append(keras.layers.MaxPooling2D(scale, dtype=policy, name=f"s{scale}_prepool"))
    if space_to_depth:
        layers.append(s2d.SpaceToDepth(dtype=policy, name=f"s{scale}_space_to_depth"))
    conv = s2d.SpaceToDepthConv2D if space_to_depth else keras.layers.Conv2D
    for i in range(CONVS_PER_PATHWAY):
        layers.append(conv(filters, KERNEL, padding="same", activation="relu",
                           name=f"s{scale}_conv{i + 1}", **weights))
    post = SCALES[-1] // scale
    pool = s2d.SpaceToDepthMaxPool if space_to_depth else keras.layers.MaxPooling2D
    if post > 1:
        layers.append(pool(post, dtype=policy, name=f"s{scale}_postpool"))
    return layers


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _recomputed(fn, x):
    """fn(x) for a batch x, keeping none of fn's activations for the backward pass.

    The forward pass runs fn image by image; the backward pass recomputes fn
    image by image and takes the gradient of each, so at most one image's
    activations are alive. Images follow each other through control
    dependencies (else TensorFlow's executor may run them all at once, or
    recompute before the gradient arrives). No gradient flows to x: it is the
    scaled image, which has no trainable ancestor. Needs a static batch size
    (training batches are: drop_remainder); without one, fn runs on the whole
    batch.
    """
    count = x.shape[0] or 1

    def split(t):
        return tf.split(t, count) if count > 1 else [t]

    @tf.custom_gradient
    def run(inputs):
        outputs = []
        for image in split(inputs):
            with tf.control_dependencies(outputs[-1:]):
                outputs.append(fn(tf.identity(image)))
        result = tf.concat(outputs, 0) if count > 1 else outputs[0]

        def grad(upstream, variables=None):
            variables = list(variables or [])
            totals, after = None, [upstream]
            for image, image_upstream in zip(split(inputs), split(upstream)):
                with tf.control_dependencies(after):
                    image = tf.identity(image)
                with tf.GradientTape() as tape:
                    tape.watch(variables)
                    output = fn(image)
                grads = tape.gradient(output, variables, output_gradients=image_upstream)
                grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
                totals = grads if totals is None else [a + b for a, b in zip(totals, grads)]
                after = totals
            return None, totals
        return result, grad
    return run(x)


class Pathways(keras.layers.Layer):
    """The seven pathways and their concatenation as one layer (remat models).

    `ordered` lists every layer in the order the plain functional model holds
    them, so that this layer's weights come in the same order (checkpoints and
    `get_weights` depend on it); it is tracked first.
    """

    def __init__(self, ordered, pathways, concat, recompute, **kwargs):
        super().__init__(**kwargs)
        self.ordered = list(ordered)
        self._pathways = [(scale, list(layers)) for scale, layers in pathways]
        self._concat = concat
        self._recompute = tuple(recompute)

    def call(self, x):
        outputs = []
        for scale, layers in self._pathways:
            fn = lambda image, layers=layers: _apply(layers, image)
            outputs.append(_recomputed(fn, x) if scale in self._recompute else fn(x))
        return self._concat(outputs)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        step = SCALES[-1]
        return (batch, height // step, width // step, sum(FILTERS))


def _pathways(x, policy, weights, recompute, space_to_depth):
    """The concatenated pathways of x: plain layers, or one `Pathways` layer."""
    pathways = [(scale, _pathway_layers(scale, filters, policy, weights,
                                        space_to_depth and scale == 1))
                for scale, filters in zip(SCALES, FILTERS)]
    concat = keras.layers.Concatenate(dtype=policy, name="concat")
    if not recompute:
        return concat([_apply(layers, x) for _, layers in pathways])
    # Keras orders a functional model's layers (hence its weights) by depth, then
    # creation: a throw-away functional model of the same graph gives that order.
    probe = keras.Input(x.shape[1:], dtype=x.dtype)
    ordered = keras.Model(probe, concat([_apply(layers, probe) for _, layers in pathways])).layers
    ordered = [layer for layer in ordered if not isinstance(layer, keras.layers.InputLayer)]
    return Pathways(ordered, pathways, concat, recompute, dtype=policy, name="pathways")(x)


def build_model(height, width, channels=3, num_classes=13, dtype_policy=None,
                weight_decay=0.0, factored_dense=False, remat="none", space_to_depth=False,
                name="mcnn"):
    """Builds the uncompiled functional M-CNN for height x width x channels images.

    Args:
      height, width: input size; multiples of 64 (128 for an exact final
        pool, as 1024 x 1280), or 724 (zero-padded to 768).
      channels: stains per image (3: BBBC021's DNA, tubulin, actin; 5: Cell
        Painting's DNA, ER, RNA, AGP, Mito). Only the seven pathways' first
        convolutions see it (`topology.first_conv_weights`).
      num_classes: size of the final logits (13 = 12 mechanisms + DMSO).
      dtype_policy: optional Keras dtype policy for the body, e.g.
        "mixed_bfloat16"; the logits are always float32.
      weight_decay: L2 weight decay on every kernel and bias, as the original
        code's `weight_decay * sum(tf.nn.l2_loss(v))` (note its factor 1/2).
      factored_dense: make the first dense layer (98.5 % of the weights) a
        `FactoredDense`, whose gradient is synchronized by all-gathering
        sufficient factors instead of all-reducing it (same weights).
      remat: "none", "full_res" or "all" (`memory.REMAT_MODES`): pathways
        whose activations are recomputed in the backward pass (same weights,
        in the same order; the pathways are then one layer, "pathways").
      space_to_depth: run the full-resolution pathway's 5x5 convolutions as
        3x3 ones on the 2x2 space-to-depth image (space_to_depth.py; same
        weights and outputs, 1.44x the FLOPs). A prototype, off by default.
      name: the model name.
    """
    check_input_size(height, width)
    check_channels(channels)
    policy = dtype_policy or keras.config.dtype_policy()
    l2 = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    weights = {"kernel_regularizer": l2, "bias_regularizer": l2, "dtype": policy}
    images = keras.Input((height, width, channels), name="images")
    x = keras.layers.Rescaling(1.0 / 255, dtype=policy, name="scale")(images)
    pad_h = (padded_size(height) - height) // 2
    pad_w = (padded_size(width) - width) // 2
    if pad_h or pad_w:
        x = keras.layers.ZeroPadding2D((pad_h, pad_w), dtype=policy, name="pad")(x)

    x = _pathways(x, policy, weights, remat_scales(remat), space_to_depth)
    x = keras.layers.Conv2D(MERGE_FILTERS, 1, activation="relu", name="mergedSummaryConv",
                            **weights)(x)
    x = keras.layers.MaxPooling2D(2, dtype=policy, name="merge_pool")(x)
    x = keras.layers.Flatten(dtype=policy, name="flatten")(x)
    # The original code computed this ReLU and never used it; we use it.
    dense = FactoredDense if factored_dense else keras.layers.Dense
    x = dense(DENSE_UNITS, activation="relu", name="ip0", **weights)(x)
    logits = keras.layers.Dense(num_classes, name="ip3", **{**weights, "dtype": "float32"})(x)
    return keras.Model(images, logits, name=name)
