"""Using a trained model: evaluation of a run and prediction on new plates.

`treatments` (per-treatment accuracy, image-level top-1/top-5),
`evaluation` (`mcnn-evaluate`: a run's model or export on TFRecords),
`predict/` (`mcnn-predict`: raw fields, images or TFRecords through an
export). May import every floor below, `train` included (a run's
configuration).
"""
