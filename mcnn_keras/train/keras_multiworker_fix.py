"""Fixes Keras 3 `fit`/`evaluate` under MultiWorkerMirroredStrategy (TF backend).

Keras 3's TensorFlow trainer crashes with several workers (two bugs, still on
Keras master when this was written; keras-team/keras#20585,
tensorflow/tensorflow#72388, ray-project/ray#47464). The Keras repository has
no multi-worker test, so `tests/test_keras_multiworker_fix.py` is the guard:
it runs two real workers with and without this module.

Bug A (Keras >= 3.5): `TensorFlowTrainer._maybe_symbolic_build` takes the
  first distributed batch and calls `strategy.reduce("MEAN", <nest of
  PerReplica>)`. The multi-worker `reduce` cannot take a nest:
  "ValueError: Attempt to convert a value (PerReplica:{...}) with an
  unsupported type ... to a Tensor." The batch is only used to build the model
  and metrics from its shapes and dtypes, so this worker's local value is
  enough (and needs no communication at all).

Bug B (Keras >= 3.3): `reduce_per_replica` (the per-step reduction of the
  logs returned by train/test steps) calls `strategy.reduce("MEAN", v,
  axis=0)` in multi-worker mode; the logs are scalars:
  "ValueError: Invalid reduction dimension 0 for input with 0 dimensions."
  `axis=None` (mean across replicas only) is what the single-worker branch
  computes too, and it makes the logged metrics global: identical on all
  workers.

Both patches wrap the original (they delegate to it whenever the strategy is
not a MultiWorkerMirroredStrategy in multi-worker mode), are applied only by
`apply(strategy)` for such a strategy and a Keras version in the known-broken
range, are idempotent, and are undone by `restore()`. Keras newer than
`VERIFIED_UP_TO` is still patched, with a warning asking to re-check whether
upstream fixed the bugs (then narrow `_BROKEN_SINCE`/`VERIFIED_UP_TO`).

Usage:

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras_multiworker_fix.apply(strategy)   # no-op unless needed
    with strategy.scope():
        model = ...
    model.fit(...)
"""

import logging
import re

import keras
import tensorflow as tf

from mcnn_keras.train import distribute

_LOG = logging.getLogger(__name__)

# First Keras version with each bug, and the newest version we verified.
_BROKEN_SINCE = {"A": (3, 5), "B": (3, 3)}
VERIFIED_UP_TO = (3, 15)
_MARKER = "_mcnn_multiworker_fix_original"


def keras_version(version=None):
    """(major, minor) of the installed (or given) Keras version string."""
    match = re.match(r"(\d+)\.(\d+)", version or keras.__version__)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def bugs_for_version(version=None):
    """The upstream bugs ('A', 'B') present in a Keras version (sorted)."""
    current = keras_version(version)
    return sorted(bug for bug, since in _BROKEN_SINCE.items() if current >= since)


def _trainer_module():
    from keras.src.backend.tensorflow import trainer  # pylint: disable=import-outside-toplevel
    return trainer


def _local_value(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _fixed_maybe_symbolic_build(original):
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy  # pylint: disable=protected-access
        if iterator is None or strategy is None or not distribute.in_multi_worker_mode(strategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        # Bug A: as upstream, peek at the first batch, but keep this worker's
        # local value instead of a cross-worker reduce of the whole nest.
        for _, _, it in iterator:
            data_batch = keras.tree.map_structure(
                lambda v: _local_value(v, strategy), next(it))
            break
        return original(self, iterator=None, data_batch=data_batch)
    _maybe_symbolic_build.__doc__ = "Bug A fix of mcnn_keras.train.keras_multiworker_fix."
    setattr(_maybe_symbolic_build, _MARKER, original)
    return _maybe_symbolic_build


def _fixed_reduce_per_replica(original):
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and distribute.in_multi_worker_mode(strategy):
            # Bug B: mean across replicas only (axis=None), as the
            # single-worker branch does; axis=0 fails on scalar logs.
            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)
    reduce_per_replica.__doc__ = "Bug B fix of mcnn_keras.train.keras_multiworker_fix."
    setattr(reduce_per_replica, _MARKER, original)
    return reduce_per_replica


def _targets():
    """(owner, attribute name, wrapper factory, bug) of each patch."""
    trainer = _trainer_module()
    return [(trainer.TensorFlowTrainer, "_maybe_symbolic_build",
             _fixed_maybe_symbolic_build, "A"),
            (trainer, "reduce_per_replica", _fixed_reduce_per_replica, "B")]


def is_applied():
    """The bugs ('A', 'B') whose fix is currently installed."""
    return sorted(bug for owner, name, _, bug in _targets()
                  if hasattr(getattr(owner, name), _MARKER))


def apply(strategy, force=False, only=None):
    """Installs the fixes needed for `strategy`; returns the bugs fixed.

    A no-op (returns []) unless `strategy` is a MultiWorkerMirroredStrategy
    in multi-worker mode and the Keras version has the bugs (`force=True`
    skips both checks; `only=("A",)` limits the fixes; both for tests).
    Idempotent.
    """
    if keras.config.backend() != "tensorflow":
        return []
    if not force and not distribute.in_multi_worker_mode(strategy):
        return []
    bugs = ["A", "B"] if force else bugs_for_version()
    bugs = [bug for bug in bugs if only is None or bug in only]
    if keras_version() > VERIFIED_UP_TO and bugs:
        _LOG.warning(
            "Keras %s is newer than %d.%d, the last version checked for upstream "
            "multi-worker bugs A/B (keras-team/keras#20585); applying the fixes "
            "anyway. Re-check mcnn_keras/train/keras_multiworker_fix.py.",
            keras.__version__, *VERIFIED_UP_TO)
    fixed = []
    for owner, name, make_wrapper, bug in _targets():
        if bug not in bugs:
            continue
        current = getattr(owner, name)
        if not hasattr(current, _MARKER):
            setattr(owner, name, make_wrapper(current))
        fixed.append(bug)
    return fixed


def restore():
    """Removes the fixes, putting the original Keras functions back."""
    for owner, name, _, _ in _targets():
        current = getattr(owner, name)
        if hasattr(current, _MARKER):
            setattr(owner, name, getattr(current, _MARKER))
