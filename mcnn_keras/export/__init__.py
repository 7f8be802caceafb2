"""The export: a trained model as a SavedModel (and ONNX) with what serving needs.

`signatures` (the `serving_default` and `features` functions), `info`
(`mcnn_export.json` read and built, its statistics, `load_model`),
`statistics` (the training data's normalisation, found), `saved_model` (the
atomic writer), `onnx_export` (model.onnx through tf2onnx). Training ends
here and serving starts here, so it sits between them: it may import `core`,
`io`, `data` and `model`, never `train`.
"""
