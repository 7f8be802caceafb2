"""The layout of a training run's directory, named once.

    <model_dir>/
      flags.json            the resolved configuration (flat field names) + plan,
                            and the flags each resume changed ("changes")
      metrics.jsonl         one JSON object per epoch
      training_curves.png   loss, top-1 and learning rate per epoch
      summary.json          final metrics, time-to-target
      checkpoints/          tf.train.CheckpointManager (model, optimizer, epoch)
      tensorboard/          TensorBoard event files
      export/               the serving SavedModel
      eval/                 mcnn-evaluate's reports
      run.lock              while a run trains: its holder (pid, host, since)

Loading a run's configuration and restoring its model live here too, so every
binary reads a run the same way; so do a run's guards: one training run per
directory (`lock`), re-runs only with resumable changes (`check_resume`,
`check_plan`), output directories we can write (`make_output_dir`). What
killed attempts left is removed by `leftovers.remove_leftovers`.

Usage:

    run = RunDir("runs/demo")
    with run.lock():                        # ValueError naming the holder if taken
        changed = run.check_resume(cfg)     # ValueError listing refused changes
        run.write_config(cfg, plan, changed, step)   # once training starts
    cfg = run.load_config()                 # a config.TrainConfig
    model, cfg, checkpoint = run.restore_model()
    run.class_names()                       # from the run's configuration
    make_output_dir("out/eval", "output_dir")   # ValueError naming --output_dir

The lock is an `fcntl.flock` on `run.lock` (local file systems, NFSv4); the
kernel drops it when its holder dies, so a killed run's lock file is taken
over. Object storage (`gs://`, `s3://`) has no locks: `lock` only warns.
"""

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import logging
import os
import socket

from mcnn_keras.io import atomic
from mcnn_keras.train import config
from mcnn_keras.io import storage

_LOG = logging.getLogger(__name__)

FLAGS_JSON = "flags.json"
METRICS = "metrics.jsonl"
TRAINING_CURVES = "training_curves.png"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EXPORT = "export"
EVAL = "eval"
LOCK = "run.lock"
# Height/width are named in their own words when they differ (see check_resume).
_SIZE = ("height", "width")
_PLAN = ("global_batch", "steps_per_epoch")  # what a resume must keep (check_plan)
# flock errors of file systems that cannot lock (e.g. Lustre without -o flock).
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def make_output_dir(path, flag):
    """Creates directory `path` (given as `--flag`) if missing; returns it.

    One line naming the flag instead of a traceback when `path` is a file,
    cannot be created, or cannot be written (a read-only file system: tried
    with a temporary file, since os.access says yes to root everywhere).
    Remote paths are left to their file system.
    """
    if storage.is_remote(path):
        return path
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"--{flag}={path}: exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--{flag}={path}: cannot create it ({e.strerror})") from None
    probe = atomic.temporary_path(os.path.join(path, "write-test"))
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--{flag}={path}: cannot write there ({e.strerror})") from None
    return path


def _read_holder(fd):
    """The holder record of an open lock file ({} if empty or unreadable)."""
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder):
    if not holder:
        return "a process that has not recorded itself yet"
    return (f"pid {holder.get('pid')} on host {holder.get('host')} "
            f"since {holder.get('since')}")


def _acquire(path, directory):
    """Locks the file `path` (created if missing); returns its fd, or None
    where the file system cannot lock."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a run that failed at once removed its new, empty dir
            os.makedirs(directory, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise ValueError(f"--model_dir={directory} is locked by {holder}: another run "
                             f"is training there; wait for it or use another --model_dir"
                             ) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            _LOG.warning("cannot lock %s (%s): make sure no other run uses this model_dir",
                         path, e.strerror)
            return None
        # The previous holder may have removed the file between our open and
        # flock: then we locked a deleted file; start over with the path's.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    stale = _read_holder(fd)
    if stale:  # its holder died without releasing it (the kernel dropped the flock)
        _LOG.info("%s: previous holder %s is gone; taking the lock", path, _describe(stale))
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (record + "\n").encode(), 0)
    os.fsync(fd)
    return fd


def _release(path, fd):
    """Removes the lock file while still holding it, then unlocks (see _acquire)."""
    with contextlib.suppress(OSError):
        os.remove(path)
    os.close(fd)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: str

    def join(self, name):
        return os.path.join(self.path, name)

    flags_json = property(lambda self: self.join(FLAGS_JSON))
    metrics = property(lambda self: self.join(METRICS))
    training_curves = property(lambda self: self.join(TRAINING_CURVES))
    summary = property(lambda self: self.join(SUMMARY))
    checkpoints = property(lambda self: self.join(CHECKPOINTS))
    tensorboard = property(lambda self: self.join(TENSORBOARD))
    export = property(lambda self: self.join(EXPORT))
    eval = property(lambda self: self.join(EVAL))
    lock_file = property(lambda self: self.join(LOCK))

    def load_flags(self):
        """The raw flags.json dict (configuration fields plus the run's plan)."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if not tf.io.gfile.exists(self.flags_json):
            raise FileNotFoundError(f"{self.flags_json} not found: is {self.path} a "
                                    f"training model_dir?")
        with tf.io.gfile.GFile(self.flags_json) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.flags_json}: not valid JSON ({e})") from None

    def load_plan(self):
        """The run's plan: global_batch, steps_per_epoch (resolved), num_workers."""
        flags = self.load_flags()
        return flags.get("plan", flags)  # at the top level before 0.2

    def load_config(self):
        """The run's `config.TrainConfig` (keys of older versions are migrated)."""
        known = {f.name for _, f in config.fields()}
        values = self.load_flags()
        if isinstance(values.get("class_names"), list):  # written as a list before 0.2
            values["class_names"] = ",".join(values["class_names"])
        return config.TrainConfig.from_flat({k: v for k, v in values.items() if k in known})

    def class_names(self):
        return self.load_config().data.class_name_list()

    # --- Guards of a training run -------------------------------------------------

    @contextlib.contextmanager
    def lock(self):
        """Holds this directory's lock for the block: one training run at a time.

        Creates the directory (`make_output_dir`). A run already holding it:
        ValueError naming its pid, host and start time. A lock file whose
        holder died (kill -9, a lost node): reported at info level and taken.
        Released (the file removed) on leaving the block, on errors too; a
        directory it created is removed again if left empty (a run that failed
        at once). Object storage and file systems without locks: a warning.
        """
        if storage.is_remote(self.path):
            _LOG.warning("%s is object storage, which has no locks: make sure no other "
                         "run uses this model_dir", self.path)
            yield
            return
        created = not os.path.lexists(self.path)
        make_output_dir(self.path, "model_dir")
        fd = _acquire(self.lock_file, self.path)
        try:
            yield
        finally:
            if fd is not None:
                _release(self.lock_file, fd)
            if created:
                with contextlib.suppress(OSError):  # not empty: a run's files
                    os.rmdir(self.path)

    def check_resume(self, cfg):
        """Checks `cfg` against the run already in this directory (if any).

        Returns the changes {name: (old, new)} a resume may make
        (`config.RESUMABLE_CHANGES`); any other difference is a ValueError
        listing each (old -> new), an image size in its own words.
        """
        if storage.is_remote(self.path) or not os.path.exists(self.flags_json):
            return {}
        old = self.load_config()
        if "plan" not in self.load_flags():
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
        raise ValueError(f"--model_dir={self.path}: {listing} (a resumed run may change "
                         f"only {', '.join(config.RESUMABLE_CHANGES)}; start a new run in "
                         f"another --model_dir)")

    def check_plan(self, plan):
        """Refuses (ValueError) a resume whose global batch or steps per epoch
        differ from the run's (other workers, say): the resumed step and the LR
        schedule would mean something else."""
        if storage.is_remote(self.path) or not os.path.exists(self.flags_json):
            return
        old = self.load_plan()
        differ = [f"{k} {old[k]} -> {plan[k]}" for k in _PLAN if k in old and old[k] != plan[k]]
        if differ:
            raise ValueError(
                f"--model_dir={self.path}: resuming would change {', '.join(differ)} "
                f"(workers {old.get('num_workers')} -> {plan.get('num_workers')}); use the "
                f"run's workers and batch, or another --model_dir")

    def write_config(self, cfg, plan, changed=None, step=0):
        """Writes flags.json: `cfg` flat, the run's `plan` (global batch, ...) and
        the history of resumes that changed flags (`changed` is added at `step`)."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        history = self.load_flags().get("changes", []) if tf.io.gfile.exists(self.flags_json) else []
        if changed:
            history.append({"step": step, "time": _now(),
                            "flags": {k: list(v) for k, v in changed.items()}})
        # The plan apart: its steps_per_epoch is resolved, the flag's may be 0.
        atomic.write_json_atomic(self.flags_json, {
            **cfg.flat(), "plan": plan, **({"changes": history} if history else {})})

    def latest_checkpoint(self):
        """The newest checkpoint, if it (and the index) reads back whole.

        Unlike training, which falls back loudly, this refuses a damaged
        newest checkpoint (ValueError naming the file and the newest intact
        one to pass as --checkpoint): an export or evaluation must not quietly
        use an older model. FileNotFoundError if there is no checkpoint.
        """
        from mcnn_keras.train import checkpoints  # pylint: disable=import-outside-toplevel  # TensorFlow
        found = checkpoints.find_newest_intact(self.checkpoints)
        if found.damaged:
            path, reason = found.damaged[0]
            use = (f"the newest intact one is {found.intact}: pass --checkpoint="
                   f"{found.intact} to use it" if found.intact else "no checkpoint there "
                   "reads back whole")
            raise ValueError(f"damaged checkpoint file {path} ({reason}); {use}")
        if not found.intact:
            raise FileNotFoundError(f"no checkpoint in {self.checkpoints}")
        return found.intact

    def restore_model(self, checkpoint=None):
        """Rebuilds the run's model from its latest (or the given) checkpoint.

        Returns (model, TrainConfig, checkpoint path). A damaged checkpoint is
        a ValueError naming its file.
        """
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
        cfg = self.load_config()
        if checkpoint:
            from mcnn_keras.train import checkpoints  # pylint: disable=import-outside-toplevel  # TensorFlow
            problem = checkpoints.check_intact(checkpoint)
            if problem:
                raise ValueError(f"damaged checkpoint file {problem[0]} ({problem[1]})")
        else:
            checkpoint = self.latest_checkpoint()
        model = build_model(cfg.data.height, cfg.data.width, cfg.data.num_classes)
        tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
        return model, cfg, checkpoint
