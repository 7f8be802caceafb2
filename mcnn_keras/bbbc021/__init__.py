"""BBBC021 (Broad Bioimage Benchmark Collection) to the project's TFRecords.

Modules follow the data flow: `metadata` (CSVs, MoA join) -> `preprocess`
(TIFF checks, illumination correction, percentile scaling) -> `splits`
(random / leave-one-compound-out / plate) -> `augment` (datasets A and B) ->
`convert` (the parallel, resumable job). `fixture` writes a miniature download
with the real layout.

Usage:

    from mcnn_keras.bbbc021 import convert
    manifest = convert.convert(convert.ConvertOptions("BBBC021", "out", split="loco"))
"""
