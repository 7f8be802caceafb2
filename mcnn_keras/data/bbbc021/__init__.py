"""BBBC021 (Broad Bioimage Benchmark Collection) to the project's TFRecords.

What is BBBC021's own: `metadata` (its two CSVs and their join into fields
of view), `options` (the `mcnn-convert-bbbc021` flags), `convert` (the join,
then the generic job of `mcnn_keras.data.conversion`), `fixture` (a miniature
download with the real layout). The normalisation is
`conversion.normalization`, shared with every screen. May import `core`, `io`
and `data`'s own modules (`classes`, `synthetic`, `conversion`).

Usage:

    from mcnn_keras.data.bbbc021 import convert
    manifest = convert.convert(convert.ConvertOptions("BBBC021", "out", split="loco"))
"""
