"""The full-resolution pathway on the 2x2 space-to-depth image (a prototype).

A 5x5 SAME convolution with C channels at H x W computes exactly what a 3x3
SAME convolution with 4C channels computes on the space-to-depth image
(H/2 x W/2, channel (a, b, c) = pixel (2i + a, 2j + b), channel c), with a
kernel built from the 5x5 weights: output sub-pixel (a', b') at block offset
(di, dj) reads input sub-pixel (a, b) through the 5x5 tap (2 di + a - a' + 2,
2 dj + b - b' + 2), zero where that leaves the 5x5 window. Same parameters
(the 5x5 kernel is the variable), same outputs, 36/25 = 1.44x the FLOPs, on
16x more channels per pixel, which CPU convolution kernels run faster.

`build_model(..., space_to_depth=True)` runs pathway 1 this way: the scaled
image goes to depth once (`SpaceToDepth`, 3 -> 12 channels), the three convs
are `SpaceToDepthConv2D` (names, weights and their order as in the plain
model, so checkpoints load either way), and the post-pool takes the 4
sub-pixels' maximum (`SpaceToDepthMaxPool`).

Usage:

    conv = SpaceToDepthConv2D(16, 5, activation="relu", name="s1_conv2")
    y = depth_to_space(conv(space_to_depth(x)))   # == Conv2D(16, 5, "same")(x)
"""

import keras
import numpy as np
import tensorflow as tf

BLOCK = 2


def kernel_indices(kernel_size, in_channels, out_channels):
    """Indices into the flattened k x k x cin x cout kernel, plus one zero at the end,
    that build the 3 x 3 x 4cin x 4cout space-to-depth kernel."""
    k, zero = kernel_size, kernel_size * kernel_size * in_channels * out_channels
    reach = k // 2  # 2 for 5x5: blocks -1, 0, 1
    size = 2 * ((reach + 1) // BLOCK) + 1
    c_in, c_out = np.arange(in_channels)[:, None], np.arange(out_channels)[None, :]
    index = np.full((size, size, BLOCK, BLOCK, in_channels, BLOCK, BLOCK, out_channels), zero)
    for di in range(size):
        for dj in range(size):
            for a in range(BLOCK):
                for b in range(BLOCK):
                    for a2 in range(BLOCK):
                        for b2 in range(BLOCK):
                            ky = BLOCK * (di - size // 2) + a - a2 + reach
                            kx = BLOCK * (dj - size // 2) + b - b2 + reach
                            if 0 <= ky < k and 0 <= kx < k:
                                index[di, dj, a, b, :, a2, b2, :] = (
                                    ((ky * k + kx) * in_channels + c_in) * out_channels + c_out)
    return index.reshape(size, size, BLOCK * BLOCK * in_channels, BLOCK * BLOCK * out_channels)


class SpaceToDepth(keras.layers.Layer):
    """H x W x C -> H/2 x W/2 x 4C (TensorFlow's channel order: sub-pixel, then channel)."""

    def call(self, x):
        return tf.nn.space_to_depth(x, BLOCK)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, h // BLOCK, w // BLOCK, c * BLOCK * BLOCK)


class SpaceToDepthConv2D(keras.layers.Conv2D):
    """A SAME stride-1 Conv2D whose input and output are space-to-depth images.

    Its variables are those of the plain Conv2D (k x k x cin x cout kernel).
    """

    def build(self, input_shape):
        super().build(tuple(input_shape[:-1]) + (input_shape[-1] // (BLOCK * BLOCK),))
        self.input_spec = keras.layers.InputSpec(min_ndim=4, axes={-1: input_shape[-1]})
        self._indices = kernel_indices(self.kernel_size[0], self.kernel.shape[2], self.filters)

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        flat = tf.concat([tf.reshape(kernel, [-1]), tf.zeros([1], kernel.dtype)], 0)
        outputs = tf.nn.conv2d(inputs, tf.gather(flat, self._indices), 1, "SAME")
        bias = tf.cast(self.bias, self.compute_dtype)
        outputs = tf.nn.bias_add(outputs, tf.tile(bias, [BLOCK * BLOCK]))
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters * BLOCK * BLOCK,)


class SpaceToDepthMaxPool(keras.layers.Layer):
    """MaxPooling2D(pool) of the image a space-to-depth tensor holds, back in plain layout."""

    def __init__(self, pool_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, x):
        pooled = tf.nn.max_pool2d(x, self.pool_size // BLOCK, self.pool_size // BLOCK, "VALID")
        shape = tf.shape(pooled)
        channels = x.shape[-1] // (BLOCK * BLOCK)
        grouped = tf.reshape(pooled, tf.concat([shape[:3], [BLOCK * BLOCK, channels]], 0))
        return tf.reduce_max(grouped, axis=3)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        step = self.pool_size // BLOCK
        return (b, h // step, w // step, c // (BLOCK * BLOCK))

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}
