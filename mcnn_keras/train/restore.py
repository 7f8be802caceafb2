"""A trained run's model, rebuilt from its checkpoint, for export and evaluation.

Unlike training, which falls back to an older checkpoint loudly, these refuse
a damaged newest checkpoint: an export or an evaluation must not quietly use
an older model.

Usage:

    model, cfg, checkpoint = restore_model(RunDir("runs/demo"))
    restore_model(run, "runs/demo/checkpoints/ckpt-40")   # a given checkpoint
    latest_checkpoint(run)                                 # its path
"""

import tensorflow as tf

from mcnn_keras.model.network import build_model
from mcnn_keras.train import checkpoints


def latest_checkpoint(run):
    """The newest checkpoint of `run` (a `run_dir.RunDir`), if it (and the
    index) reads back whole.

    A damaged newest checkpoint: ValueError naming the file and the newest
    intact one to pass as --checkpoint. FileNotFoundError if there is none.
    """
    found = checkpoints.find_newest_intact(run.checkpoints)
    if found.damaged:
        path, reason = found.damaged[0]
        use = (f"the newest intact one is {found.intact}: pass --checkpoint="
               f"{found.intact} to use it" if found.intact else "no checkpoint there "
               "reads back whole")
        raise ValueError(f"damaged checkpoint file {path} ({reason}); {use}")
    if not found.intact:
        raise FileNotFoundError(f"no checkpoint in {run.checkpoints}")
    return found.intact


def restore_model(run, checkpoint=None):
    """Rebuilds the model of `run` from its latest (or the given) checkpoint.

    Returns (model, TrainConfig, checkpoint path). A damaged checkpoint is a
    ValueError naming its file.
    """
    cfg = run.load_config()
    if checkpoint:
        problem = checkpoints.check_intact(checkpoint)
        if problem:
            raise ValueError(f"damaged checkpoint file {problem[0]} ({problem[1]})")
    else:
        checkpoint = latest_checkpoint(run)
    model = build_model(cfg.data.height, cfg.data.width, cfg.data.channels,
                        cfg.data.num_classes)
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
    return model, cfg, checkpoint
