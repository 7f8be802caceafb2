"""TIFF checks and the illumination correction / scaling of BBBC021 fields."""

import numpy as np
import pytest
import tifffile

from mcnn_keras.data.conversion import images
from mcnn_keras.data.conversion import normalization


def test_known_illumination_gradient_is_removed():
    """Flat-mean textured fields under a 40 % ramp: after correction the
    corner / centre mean ratio is within 2 % (15 % or more off before)."""
    rng = np.random.default_rng(0)
    height, width = 256, 320
    y = np.linspace(-1, 1, height)[:, None]
    x = np.linspace(-1, 1, width)[None, :]
    ramps = [1 + 0.2 * x + 0.2 * y, 1 - 0.3 * x + 0.1 * y, 1 + 0.05 * x - 0.35 * y]
    fields = []
    for _ in range(20):
        texture = rng.gamma(4.0, 250.0, (height, width, 3))
        fields.append(np.stack([texture[..., c] * ramps[c] for c in range(3)], -1)
                      .clip(0, 65535).astype(np.uint16))
    stats = normalization.plate_statistics(fields)
    corner = (slice(0, 32), slice(0, 32))
    centre = (slice(112, 144), slice(144, 176))
    raw = np.mean(fields, axis=0)
    full_map = stats.full_map()
    corrected = np.mean([f / full_map for f in fields], axis=0)
    for c in range(3):
        before = raw[corner + (c,)].mean() / raw[centre + (c,)].mean()
        after = corrected[corner + (c,)].mean() / corrected[centre + (c,)].mean()
        assert abs(before - 1) > 0.15
        assert abs(after - 1) < 0.02, (c, before, after)
    assert stats.full_map().min() >= 1.0
    image = normalization.to_uint8(normalization.normalize(fields[0], stats))
    assert image.dtype == np.uint8 and image.shape == (height, width, 3)


def test_statistics_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    fields = [rng.integers(100, 4000, (64, 64, 3)).astype(np.uint16) for _ in range(3)]
    stats = normalization.plate_statistics(fields)
    normalization.save_statistics(str(tmp_path), {"Week1_22123": stats}, sigma=31.25)
    # Exactly the two final names: no temporary left, no ".npz" appended twice.
    assert sorted(p.name for p in tmp_path.iterdir()) == [normalization.MAPS_NPZ,
                                                          normalization.STATS_JSON]
    loaded = normalization.load_statistics(str(tmp_path))["Week1_22123"]
    np.testing.assert_allclose(normalization.normalize(fields[1], loaded),
                               normalization.normalize(fields[1], stats), atol=1e-6)


def _write(path, array, **kwargs):
    tifffile.imwrite(path, array, **kwargs)
    return str(path)


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("name, make, message", [
    ("eight_bit.tif", lambda p: _write(p, np.zeros((32, 40), np.uint8)), "16-bit"),
    ("rgb.tif", lambda p: _write(p, np.zeros((32, 40, 3), np.uint16), photometric="rgb"),
     "one channel"),
    ("wrong_size.tif", lambda p: _write(p, np.zeros((40, 32), np.uint16)), "expected 32x40"),
    ("missing.tif", str, "file not found"),
    ("truncated.tif", lambda p: _truncate(_write(p, np.ones((32, 40), np.uint16))),
     "truncated"),
    ("garbage.tif", lambda p: open(p, "wb").write(b"not a tiff at all") and str(p),
     "unreadable TIFF"),
])
def test_bad_tiffs_fail_with_one_line_naming_the_file(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(images.ImageError) as error:
        images.read_tiff(str(tmp_path / name), 32, 40)
    text = str(error.value)
    assert str(tmp_path / name) in text and message in text and "\n" not in text


def test_reads_a_good_16_bit_tiff(tmp_path):
    data = np.arange(32 * 40, dtype=np.uint16).reshape(32, 40)
    path = _write(tmp_path / "ok.tif", data)
    np.testing.assert_array_equal(images.read_tiff(path, 32, 40), data)
