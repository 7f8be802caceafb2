"""What a re-run on an existing run directory may change.

A run is resumed by running it again on its model_dir. Its flags.json says
what it was; a re-run may change only `config.RESUMABLE_CHANGES` (epochs, the
log level, ...) and must keep its plan (global batch, steps per epoch), or
the restored step and the learning-rate schedule would mean something else.
Both checks run on the chief before anything is built.

Usage:

    changed = check_resume(run, cfg)   # {name: (old, new)}; ValueError listing refused ones
    check_plan(run, plan)              # ValueError if global batch / steps per epoch differ
"""

import os

from mcnn_keras.io import storage
from mcnn_keras.train import config

# Height/width are named in their own words when they differ (see check_resume).
_SIZE = ("height", "width")
_PLAN = ("global_batch", "steps_per_epoch")  # what a resume must keep (check_plan)


def _has_run(run):
    return not storage.is_remote(run.path) and os.path.exists(run.flags_json)


def check_resume(run, cfg):
    """Checks `cfg` against the run already in `run` (a `run_dir.RunDir`), if any.

    Returns the changes {name: (old, new)} a resume may make
    (`config.RESUMABLE_CHANGES`); any other difference is a ValueError
    listing each (old -> new), an image size in its own words.
    """
    if not _has_run(run):
        return {}
    old = run.load_config()
    if "plan" not in run.load_flags():
        # flags.json before 0.2 held the resolved steps per epoch under the
        # flag's name; check_plan compares that value.
        old = old.replace(steps_per_epoch=cfg.schedule.steps_per_epoch)
    changed = config.differences(old, cfg)
    refused = {k: v for k, v in changed.items() if k not in config.RESUMABLE_CHANGES}
    if not refused:
        return changed
    sizes = [(c.data.height, c.data.width) for c in (old, cfg)]
    listing = ", ".join(f"{name} {a!r} -> {b!r}" for name, (a, b) in refused.items()
                        if sizes[0] == sizes[1] or name not in _SIZE)
    if sizes[0] != sizes[1]:
        head = (f"this model_dir holds a {sizes[0][0]}x{sizes[0][1]} run; you asked "
                f"for {sizes[1][0]}x{sizes[1][1]}")
        listing = f"{head}{'; other flags differ too: ' + listing if listing else ''}"
    else:
        listing = f"it holds a run with other flags: {listing}"
    raise ValueError(f"--model_dir={run.path}: {listing} (a resumed run may change "
                     f"only {', '.join(config.RESUMABLE_CHANGES)}; start a new run in "
                     f"another --model_dir)")


def check_plan(run, plan):
    """Refuses (ValueError) a resume whose global batch or steps per epoch
    differ from the run's (other workers, say)."""
    if not _has_run(run):
        return
    old = run.load_plan()
    differ = [f"{k} {old[k]} -> {plan[k]}" for k in _PLAN if k in old and old[k] != plan[k]]
    if differ:
        raise ValueError(
            f"--model_dir={run.path}: resuming would change {', '.join(differ)} "
            f"(workers {old.get('num_workers')} -> {plan.get('num_workers')}); use the "
            f"run's workers and batch, or another --model_dir")
