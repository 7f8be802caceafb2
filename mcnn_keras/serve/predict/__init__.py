"""`mcnn-predict`: an export classifies raw fields, RGB images or TFRecords.

`options` (`PredictOptions`, the flags), `inputs` (what `--inputs` is and its
fields), `normalize` (raw fields -> the training-time uint8: `training`,
`plate` or `image` statistics), `predictor` (batches through the model,
CSV + Parquet features, accuracies, one JSON line). Imports `serve`'s own
modules and the floors below.
"""
