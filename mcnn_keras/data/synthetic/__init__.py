"""Synthetic BBBC021-like and Cell Painting-like cell images: the demo set, test data.

`difficulty` (penetrance, plate effects, DMSO-like fields and their
presets), `cells` (where a field's cells go and how one is drawn),
`cell_painting` (one five-stain Cell Painting cell, `CELL_PAINTING_CHANNELS`),
`optics` (blur, noise, class-blind exposure), `generator` (fields, labels,
sharded TFRecords and their manifest.json), `options` (`mcnn-synthetic`'s).
Imports `core`, `io` and `data.classes`.
"""
