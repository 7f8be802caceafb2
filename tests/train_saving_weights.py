r"""Test helper: `mcnn-train` whose every worker also saves its final weights.

Multi-worker tests compare the workers' weights, but only the chief writes
checkpoints; this adds a test-side callback instead of a production flag:

    python tests/train_saving_weights.py --final_weights_npz=/tmp/w-{worker}.npz \
        <mcnn-train flags>

`{worker}` becomes the worker index (from TF_CONFIG; 0 without it).
"""

import os

from absl import flags
import keras
import numpy as np

from mcnn_keras.core import cluster
from mcnn_keras.cli import common, train

flags.DEFINE_string("final_weights_npz", None, "Where every worker saves its final "
                    "trainable weights ('{worker}' -> its index).")
flags.mark_flag_as_required("final_weights_npz")
FLAGS = flags.FLAGS


class SaveFinalWeights(keras.callbacks.Callback):
    """Saves the trainable weights at the end of every fit (the last one wins)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        np.savez(self.path, *[w.numpy() for w in self.model.trainable_weights])


def main(argv):
    tf_config = os.environ.get("TF_CONFIG")
    worker = cluster.parse_tf_config(tf_config).worker_index if tf_config else 0
    train.main(argv, extra_callbacks=[
        SaveFinalWeights(FLAGS.final_weights_npz.format(worker=worker))])


if __name__ == "__main__":
    common.run_main(main, help_sections=train.SECTIONS)
