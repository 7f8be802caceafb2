"""Micro-batches: a batch's gradient computed a slice at a time, applied once.

A training step normally keeps the activations of its whole batch until the
backward pass has used them; at 1024 x 1280 that is 342 MB per float32 image
(the paper's Fig. 2). `split_train_step(model, n)` makes each step cut its
batch into n equal micro-batches and run forward and backward on one after
the other (control dependencies keep TensorFlow's executor from overlapping
them), so only one micro-batch's activations are alive at a time. The
gradients are averaged and applied once, with one all-reduce under a
distribution strategy: the same update as the whole batch, up to float
summation order, because the M-CNN has no layer that mixes the images of a
batch (no batch normalization). Unlike `--remat`, nothing is computed twice.

The loss and metrics are accumulated over the micro-batches as over the batch.
Needs a batch size divisible by n (`config.validate` checks `--microbatches`).

Usage:

    model = build_model(1024, 1280)
    training.compile_model(model, config.ScheduleConfig(batch_size=64), 13)
    microbatch.split_train_step(model, 4)   # each batch of 64: 4 x 16 images
    model.fit(...)
"""

import functools

import keras
import tensorflow as tf


def split_train_step(model, count):
    """Makes `model`'s (compiled) train step run its batch in `count` micro-batches.

    count = 1 leaves the model's own train step. Returns the model.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"--microbatches must be an integer >= 1, got {count!r}")
    if count > 1:
        model.train_step = functools.partial(_train_step, model, count)
    return model


def count_of(model):
    """The micro-batches per step `model` trains with (1: its own train step)."""
    step = getattr(model, "train_step", None)
    return step.args[1] if getattr(step, "func", None) is _train_step else 1


def _loss_tracker(model):
    return next(m for m in model.metrics if m.name == "loss")


def _train_step(model, count, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if sample_weight is not None:
        raise ValueError("micro-batches do not support sample weights")
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    variables = model.trainable_variables
    totals, done = None, []
    for images, labels in zip(tf.split(x, count), tf.split(y, count)):
        with tf.control_dependencies(done):  # one micro-batch at a time
            images = tf.identity(images)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            # Scaled by 1/replicas under a strategy (Keras does it), like the plain step.
            loss = model.compute_loss(x=images, y=labels, y_pred=logits, training=True)
            scaled = model.optimizer.scale_loss(loss)  # a loss-scale optimizer's factor
        _loss_tracker(model).update_state(loss * replicas, sample_weight=tf.shape(images)[0])
        grads = tape.gradient(scaled, variables)
        totals = grads if totals is None else [a + b for a, b in zip(totals, grads)]
        model.compute_metrics(images, labels, logits)
        done = totals
    model.optimizer.apply_gradients(zip([g / count for g in totals], variables))
    return model.get_metrics_result()
