"""Files: how everything the project writes reaches disk or object storage.

`storage` (local paths and URLs: the one rule for what is remote), `atomic`
(every atomic write and its temporaries), `records` (the TFRecord schema and
sharded writer), `features_table` (the per-field features Parquet table in
pycytominer's layout), `plots` (every PNG, saved atomically). May import
`core` only.
"""
