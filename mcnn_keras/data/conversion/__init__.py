"""Raw fields of view -> the project's TFRecords, for any screen.

Modules follow the data flow: `field` (the FieldOfView type) -> `fields`
(index CSVs, BBBC021's image table, the raw-field reading API the predictor
shares) -> `images` (TIFF/PNG reading, channel mapping, crop/pad) ->
`normalization` (illumination maps, percentiles, statistics files) ->
`splits` (random / leave-one-compound-out / plate) -> `augment` (datasets A
and B) -> `options` (the converters' flags) -> `job` (the resumable sharded
conversion, `pool`: its worker processes) -> `convert_images` (an index CSV
through the job). BBBC021's CSV join lives in `mcnn_keras.data.bbbc021`.

Usage:

    from mcnn_keras.data.conversion import convert_images
    manifest = convert_images.convert(convert_images.ImagesOptions("index.csv", "out"))
"""
