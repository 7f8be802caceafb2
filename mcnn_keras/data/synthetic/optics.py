"""The microscope and camera of a synthetic field, and its class-blind exposure.

A field's cells are drawn sharp into a (C, H, W) float32 array; `camera`
adds what the optics and the sensor add (uneven illumination, blur, shot-like
and read noise), `expose` brings each channel to a random mean and standard
deviation drawn the same way for every class and clips to [0, 1]. Both work
for any channel count C and draw from `rng` in a fixed order, so a 3-channel
field gets exactly the draws it always got (byte-identical files).

Usage:

    fields = camera(fields, scale, rng)         # (C, H, W), still unclipped
    image = expose(fields, rng, plate)          # H x W x C float32 in [0, 1]
"""

import numpy as np

# Ranges of the per-channel exposure targets, the same for every class. The low
# means put the background at or below zero, so that it clips to black.
TARGET_MEAN = (0.03, 0.09)
TARGET_STD = (0.1, 0.2)


def smooth(fields, sigma):
    """Gaussian blur of each (H, W) plane of `fields` by FFT (periodic edges).

        blurred = smooth(fields, 1.5)    # same shape and dtype float32
    """
    height, width = fields.shape[-2:]
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    spectrum = np.fft.rfft2(fields) * transfer.astype(np.float32)
    return np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)


def camera(fields, scale, rng):
    """Uneven illumination, blur (sigma ~ `scale` px) and noise of (C, H, W) `fields`.

        fields = camera(fields, 1.0, np.random.default_rng(0))
    """
    channels, height, width = fields.shape
    yy = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.15, 0.15, (channels, 2)).astype(np.float32)
    fields *= 1 + tilt[:, :1, None] * yy + tilt[:, 1:, None] * xx
    fields = smooth(fields, rng.uniform(0.7, 1.1) * scale)
    fields += (np.sqrt(np.maximum(fields, 0)) * 0.03
               * rng.standard_normal(fields.shape, np.float32))
    fields += 0.004 * rng.standard_normal(fields.shape, np.float32)
    return fields


def expose(fields, rng, plate=None):
    """Class-independent exposure of (C, H, W) `fields` -> H x W x C in [0, 1].

    Each channel is brought to a random target mean and std (`TARGET_MEAN`,
    `TARGET_STD`), then multiplied by the `plate`'s illumination (a
    `difficulty.Plate` or None: brightness follows the plate, not the class).

        image = expose(fields, np.random.default_rng(0))
    """
    channels, height, width = fields.shape
    mean = fields.mean(axis=(1, 2), keepdims=True)
    std = fields.std(axis=(1, 2), keepdims=True) + 1e-6
    target_mean = rng.uniform(*TARGET_MEAN, (channels, 1, 1)).astype(np.float32)
    target_std = rng.uniform(*TARGET_STD, (channels, 1, 1)).astype(np.float32)
    fields = (fields - mean) / std * target_std + target_mean
    if plate is not None:  # after the exposure: brightness follows the plate
        fields *= plate.illumination(height, width, channels)
    return np.clip(fields, 0, 1).transpose(1, 2, 0).copy()
