"""Keras callbacks of the training loop, one concept per module.

`host_step` (the global step counted on the host, a base class),
`lr_scheduler` (the learning rate per step), `throughput` (images/s),
`checkpoint` (periodic and SIGTERM checkpoints, `Preempted`), `divergence`
(a non-finite loss or weight stops the run), `target_accuracy` (stop at a
validation top-1), `metrics_logger` (metrics.jsonl). They import from the
`train` floor's own modules and the floors below it; nothing here is
re-exported: `from mcnn_keras.train.callbacks import throughput`.
"""
