"""BBBC021's former home of reading and normalising fields; kept for imports.

The normalisation (illumination maps, percentiles, statistics files) lives in
`mcnn_keras.conversion.normalization`, image reading in
`mcnn_keras.conversion.images`; this module re-exports their names.

Usage:

    from mcnn_keras.bbbc021.preprocess import load_statistics, normalize, to_uint8
"""

# pylint: disable=unused-import,wildcard-import,unused-wildcard-import
from mcnn_keras.conversion.images import ImageError, read_field, read_tiff
from mcnn_keras.conversion.normalization import *
from mcnn_keras.conversion.normalization import (  # the names other modules import
    MAPS_NPZ, STATS_JSON, PlateStats, StatisticsAccumulator, load_statistics, normalize,
    plate_statistics, save_statistics, to_uint8)
