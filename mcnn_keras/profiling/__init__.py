"""Morphological profiles from a model's per-field features.

`profile` (DMSO normalisation per plate, treatment aggregation, 1-NN MoA
matching with NSC/NSCB; no TensorFlow), `report` (profiles.parquet,
treatments.csv, metrics.json and the PNGs of `mcnn-profile`). May import
every floor below; reads the features table `serve.predict` writes.
"""
