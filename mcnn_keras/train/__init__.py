"""Training: the configuration, the run directory and the fit loop across workers.

`config` (every hyperparameter, in sections), `schedule` (the learning-rate
recipe), `callbacks/` (one Keras callback per file), `run_dir` (a run's
files, its lock, its configuration and resume rules, restoring its model),
`leftovers` (what killed attempts left), `distribute` and
`keras_multiworker_fix` (tf.distribute and the upstream fix), `launcher`
(local workers), `training` (`train(config)`, top to bottom). May import
every floor below: `core`, `io`, `data`, `model`, `export`.
"""
