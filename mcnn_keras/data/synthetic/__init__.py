"""Synthetic BBBC021-like cell images: the bundled demo set and test data.

`difficulty` (penetrance, plate effects, DMSO-like fields and their
presets), `cells` (where a field's cells go and how one is drawn),
`generator` (fields, labels and sharded TFRecords). Imports `core`, `io` and
`data.classes`.
"""
