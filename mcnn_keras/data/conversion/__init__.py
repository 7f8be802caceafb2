"""Raw fields of view -> the project's TFRecords, for any screen.

Modules follow the data flow: `field` (the FieldOfView type) -> `fields`
(index CSVs, BBBC021's image table, the raw-field reading API the predictor
shares), `load_data` (CellProfiler LoadData CSVs, labels joined by `labels`
from a platemap / JUMP's well.csv), `ome_zarr_plate` + `ome_zarr_fields`
(OME-Zarr HCS plates) -> `images` (TIFF/PNG/OME-Zarr reading, CellProfiler
illumination functions, mapping to the model's C channels, crop/pad) ->
`normalization` (illumination maps, percentiles, statistics files) ->
`splits` (random / leave-one-compound-out / plate) -> `augment` (datasets A
and B) -> `options` (the converters' flags) -> `job` (the resumable sharded
conversion, `pool`: its worker processes) -> `convert_images` (an index
CSV, LoadData CSVs or OME-Zarr plates through the job). BBBC021's CSV join lives in `mcnn_keras.data.bbbc021`.

Usage:

    from mcnn_keras.data.conversion import convert_images
    from mcnn_keras.data.conversion.options import ImagesOptions
    manifest = convert_images.convert(ImagesOptions("index.csv", "out"))
    manifest = convert_images.convert(ImagesOptions(output_dir="cp", load_data_csv="P1/load_data.csv",
                                                    labels_csv="well.csv"))
"""
