"""Data: from raw fields of view to the tf.data input of training.

`classes` (the BBBC021 mechanisms of action), `dihedral` (the augmentation
set), `synthetic/` (the demo and test images), `conversion/` (any screen's
raw fields -> TFRecords), `bbbc021/` (that data set's CSVs, on top of
`conversion`), `dataset` (tf.data: sharding, shuffling, resumable streams).
May import `core` and `io`.
"""
