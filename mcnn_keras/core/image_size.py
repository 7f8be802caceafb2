"""Which image sizes the M-CNN takes: one rule for the data and the model.

Every pathway ends at H/64 x W/64, so a side must be a multiple of 64; 724
(the paper's Dataset B, 1024 / sqrt(2)) is zero-padded to 768. The model
(`model.network`, `model.memory`), the export's metadata and every option
class with --height/--width (training, the synthetic generator, bench, ttt)
check sizes here, so a size is refused in the same words before any work.

Usage:

    padded_size(724)              # 768: the size the network runs at
    check_input_size(100, 128)    # ValueError: image height 100 is not supported ...
    check_size_flags(100, 128)    # the same, naming --height/--width
"""

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


def check_size_flags(height, width):
    """`check_input_size` for the --height/--width flags: the error names them."""
    try:
        check_input_size(height, width)
    except ValueError as e:
        raise ValueError(f"--height/--width: {e}") from None
