r"""Time-to-train (TTT): `mcnn-train` to a target accuracy, over a grid of configurations.

The paper's evidence is time-to-train, not throughput (Table 1, Figs. 7 and
9). `run_experiment` trains one `RunSpec` (workers, per-worker batch, with or
without the linear LR scaling rule, any other mcnn-train flag) as real
`mcnn-train` processes: one process on all cores for 1 worker, `mcnn-launch
--pin_cores` (`launcher.launch_local`) for several, or for `cores` pinned
cores per worker (1 worker x 1 core vs 2 x 1 is the paper's 1 node vs 2
nodes: twice the hardware). It watches the run's metrics.jsonl and
stops a run (SIGTERM: it checkpoints and exits) that diverges (a non-finite
loss, or a loss above `diverge_loss`), stalls (validation top-1 not above
chance + `stall_margin` after `stall_epochs` epochs) or runs out of
`time_limit_s`. Nothing is retried. `report.write_report` then writes:

    <output_dir>/ttt.md, ttt.csv      the table (COLUMNS), in the shape of Table 1
    <output_dir>/ttt_fig9.png         validation top-1 and learning rate per epoch
    <output_dir>/ttt_fig7.png         loss, top-1, top-5 per epoch; top-1 vs wall clock
    <output_dir>/runs/<name>/         each run's model_dir + stdout.log, stderr.log, ttt.json
    <output_dir>/data/                the synthetic set (`prepare_data`) unless given

Statuses: reached, diverged, stalled, not reached (max epochs or time limit),
failed (any other non-zero exit; `detail` has its error line). A run whose
directory holds a ttt.json is reused, not re-run.

Usage:

    specs = parse_configs("1w:workers=1,batch_size=8;2w:workers=2,batch_size=8")
    data = prepare_data("out/ttt", 128, 128, 1300, 260)
    exp = Experiment("out/ttt", data.train_files, data.val_files, 128, 128,
                     target_accuracy=0.9, notes=data.notes)
    report.write_report(exp, [run_experiment(spec, exp) for spec in specs])
"""

import dataclasses
import json
import logging
import math
import os
import re
import shlex
import statistics
import sys
import time

from mcnn_keras.core import options, processes
from mcnn_keras.core.repo import python_path
from mcnn_keras.io import atomic
from mcnn_keras.data import classes
from mcnn_keras.train import config
from mcnn_keras.train import run_dir
from mcnn_keras.data.synthetic import generator as synthetic
from mcnn_keras.experiments.ttt.report import COLUMNS

_LOG = logging.getLogger(__name__)

RESULT = "ttt.json"
# Flags mcnn-ttt sets itself; a configuration may set any other mcnn-train flag.
RESERVED = ("train_files", "val_files", "model_dir", "strategy", "target_accuracy",
            "height", "width")
# An error line that says the run diverged (mcnn-train: "error: ... not finite ...").
DIVERGED_ERROR = re.compile(r"not finite|non-finite|\bnan\b|\binf\b|diverg", re.IGNORECASE)
POLL_S, GRACE_S = 1.0, 120.0  # the grace covers a full-size SIGTERM checkpoint


# --- Configurations -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One configuration. Without the linear rule the peak LR stays at base_lr."""

    name: str
    workers: int = 1
    batch_size: int = 8  # per worker
    linear_scaling: bool = True
    cores: int = 0  # pinned cores per worker; 0 = 1 worker on all, several split evenly
    flags: tuple = ()  # (name, value) of other mcnn-train flags

    @property
    def global_batch(self):
        return self.workers * self.batch_size

    def train_flags(self):
        values = {"batch_size": self.batch_size}
        if not self.linear_scaling:  # peak = base_lr x global / reference = base_lr
            values["reference_batch_size"] = self.global_batch
        values.update(self.flags)
        return [f"--{k}={str(v).lower() if isinstance(v, bool) else v}"
                for k, v in values.items()]


_OWN_MINIMUM = {"workers": 1, "cores": 0, "linear_scaling": None}  # RunSpec's own keys
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _parse_value(name, text):
    """`text` as the type of mcnn-train's flag `name` (or of RunSpec's field), checked."""
    fields = {f.name: f for _, f in config.fields()}
    if name in RESERVED:
        raise ValueError(f"--configs: {name} is set by mcnn-ttt, not per configuration")
    if name not in fields and name not in _OWN_MINIMUM:
        raise ValueError(f"--configs: unknown key {name!r} (workers, cores, linear_scaling "
                         f"or an mcnn-train flag)")
    kind = type(fields[name].default if name in fields else getattr(RunSpec, name))
    try:
        value = _BOOLS[text.lower()] if kind is bool else kind(text)
    except (KeyError, ValueError):
        raise ValueError(f"--configs: {name}={text!r} is not a {kind.__name__}") from None
    if name in fields:
        options.check_value(name, value, fields[name].metadata)
    elif _OWN_MINIMUM[name] is not None and value < _OWN_MINIMUM[name]:
        raise ValueError(f"--configs: {name} must be >= {_OWN_MINIMUM[name]}, got {value}")
    return value


def make_spec(name, **values):
    """A RunSpec; `values` may hold any mcnn-train flag besides the RunSpec fields."""
    own = {k: values.pop(k) for k in ("workers", "batch_size", "linear_scaling", "cores")
           if k in values}
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ValueError(f"--configs: configuration name {name!r}: use letters, digits, _.+-")
    if "reference_batch_size" in values and "linear_scaling" in own:
        raise ValueError(f"--configs: {name}: give linear_scaling or reference_batch_size")
    if own.get("batch_size", 1) < 1:
        raise ValueError(f"--configs: {name}: batch_size must be >= 1")
    return RunSpec(name, **own, flags=tuple(values.items()))


def parse_configs(text):
    """RunSpecs from `name:key=value,key=value;name2:...` (the name may be left out)."""
    specs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        head, colon, tail = part.partition(":")
        name, body = (head, tail) if colon and "=" not in head else ("", part)
        values = {}
        for item in filter(None, (i.strip() for i in body.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--configs: expected key=value, got {item!r}")
            values[key.strip()] = _parse_value(key.strip(), value.strip())
        specs.append(make_spec(name.strip() or _auto_name(values), **values))
    return unique_names(specs)


def _auto_name(values):
    rule = "" if values.get("linear_scaling", True) else "-fixed"
    cores = f"-c{values['cores']}" if values.get("cores") else ""
    return f"w{values.get('workers', 1)}{cores}-b{values.get('batch_size', 8)}{rule}"


def unique_names(specs):
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"configuration names must be unique: {names}")
    return specs


def grid(workers, batch_sizes, scaling=(True,)):
    """The product workers x per-worker batch x with/without the linear rule."""
    values = [{"workers": w, "batch_size": b, "linear_scaling": s}
              for s in scaling for w in workers for b in batch_sizes]
    return unique_names([make_spec(_auto_name(v), **v) for v in values])


# --- Data ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Data:
    """The shards of an experiment and what limits it."""

    train_files: str
    val_files: str
    notes: str = ""
    val_ceiling: float = 1.0  # best reachable val top-1: DMSO-like fields are lost


def prepare_data(output_dir, height, width, num_train, num_val, num_shards=4, seed=0,
                 difficulty=None):
    """Writes (once) the synthetic set under output_dir/data; returns its `Data`."""
    difficulty = difficulty or synthetic.make_difficulty()
    data = os.path.join(output_dir, "data")
    params = {"height": height, "width": width, "num_train": num_train, "num_val": num_val,
              "num_shards": num_shards, "seed": seed, **dataclasses.asdict(difficulty)}
    stamp = os.path.join(data, "synthetic.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            written = json.load(f)
        if written.get("params") != params:
            raise ValueError(f"{data} holds another synthetic set (see {stamp}): use "
                             f"another --output_dir")
        _LOG.info("reusing the synthetic set in %s", data)
    else:
        summary = synthetic.write_synthetic_dataset(data, height, width, num_train, num_val,
                                                    num_shards, seed, difficulty=difficulty)
        written = {"params": params, "val_dmso_like": summary["val"]["dmso_like"]}
        atomic.write_json_atomic(stamp, written)  # last: marks the set complete
    ceiling = 1 - written["val_dmso_like"] / max(num_val, 1)
    options = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(difficulty).items())
    notes = (f"synthetic set: {num_train} train / {num_val} val images, seed {seed}, "
             f"{options} ({written['val_dmso_like']} DMSO-like val fields: top-1 at most "
             f"{ceiling:.2%})")
    return Data(os.path.join(data, "train-*.tfrecord"), os.path.join(data, "val-*.tfrecord"),
                notes, ceiling)


# --- Running ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Experiment:
    """What every run of an experiment shares."""

    output_dir: str
    train_files: str
    val_files: str
    height: int
    width: int
    target_accuracy: float = 0.99
    max_epochs: int = 20
    dtype: str = "float32"
    extra_train_flags: tuple = ()  # before mcnn-ttt's own flags and the configuration's
    stall_epochs: int = 5  # 0 = never call a run stalled
    stall_margin: float = 0.05
    diverge_loss: float = 25.0  # chance is ln 13 = 2.56
    time_limit_s: float = 0.0  # per run; 0 = none
    notes: str = ""


def train_command(spec, exp, model_dir):
    """The argv of one run: mcnn-train, under mcnn-launch for several workers."""
    train = [sys.executable, "-m", "mcnn_keras.cli.train", *exp.extra_train_flags,
             f"--train_files={exp.train_files}", f"--val_files={exp.val_files}",
             f"--model_dir={model_dir}", f"--height={exp.height}", f"--width={exp.width}",
             f"--dtype={exp.dtype}", f"--epochs={exp.max_epochs}",
             f"--target_accuracy={exp.target_accuracy}", "--verbose=2", *spec.train_flags()]
    if spec.workers == 1 and not spec.cores:
        return train
    launch = [sys.executable, "-m", "mcnn_keras.cli.launch", f"--num_workers={spec.workers}",
              "--pin_cores", *([f"--threads_per_worker={spec.cores}"] if spec.cores else []),
              "--"]
    return launch + train + (["--strategy=multi_worker_mirrored"] if spec.workers > 1 else [])


def _read_history(path):
    return run_dir.read_metrics(path) if os.path.exists(path) else []


def _finite(value):
    return value is not None and math.isfinite(value)


def check_progress(history, exp, num_classes=classes.NUM_CLASSES):
    """(status, detail) if the epochs in `history` show divergence or a stall, else None.

    The metrics file stores a non-finite value as null.
    """
    for h in history:
        for key in ("loss", "val_loss"):
            if key in h and not _finite(h[key]):
                return "diverged", f"{key} is not finite at epoch {h['epoch']}"
        if h.get("loss", 0) > exp.diverge_loss:  # validation loss may spike and recover
            return "diverged", (f"loss {h['loss']:.4g} at epoch {h['epoch']} is above "
                                f"--diverge_loss={exp.diverge_loss:g}")
    chance = 1 / num_classes
    if exp.stall_epochs and len(history) >= exp.stall_epochs:
        best = max((h.get("val_top1") or 0.0) for h in history)
        if best <= chance + exp.stall_margin:
            return "stalled", (f"best val top-1 {best:.3f} after {len(history)} epochs "
                               f"(chance {chance:.3f} + margin {exp.stall_margin:g})")
    return None


def _progress_check(exp, metrics, start, verdicts):
    """A `should_stop` for the run's `WorkerGroup`: true (the verdict appended to
    `verdicts`) on divergence, a stall or the time limit."""
    def should_stop():
        verdict = check_progress(_read_history(metrics), exp)
        late = exp.time_limit_s and time.monotonic() - start > exp.time_limit_s
        if verdict is None and late:
            verdict = "not reached", f"time limit of {exp.time_limit_s / 60:g} min"
        if verdict is not None:
            # SIGTERM to mcnn-launch's group: it forwards it to its workers.
            _LOG.info("stopping the run: %s: %s", *verdict)
            verdicts.append(verdict)
        return verdict is not None
    return should_stop


def _error_line(path):
    """The last `error:` line of a stderr log (any worker's), else its last line."""
    with open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [""])[-1]


def classify(exit_code, verdict, error_line, history, summary, exp):
    """The run's (status, detail) from how it ended."""
    if verdict is not None:
        return verdict
    progress = check_progress(history, exp)
    if exit_code != 0:
        if DIVERGED_ERROR.search(error_line):
            return "diverged", error_line
        if progress and progress[0] == "diverged":
            return progress
        return "failed", error_line or f"exit code {exit_code}"
    if summary.get("target_reached_epoch"):
        return "reached", ""
    if progress:
        return progress
    best = max([h.get("val_top1") or 0.0 for h in history] or [0.0])
    return "not reached", f"best val top-1 {best:.3f} after {len(history)} epochs"


def run_experiment(spec, exp):
    """Runs (or reuses) one configuration; returns its row of the table (COLUMNS)."""
    run = run_dir.RunDir(os.path.join(exp.output_dir, "runs", spec.name))
    saved = run.join(RESULT)
    command = train_command(spec, exp, os.path.abspath(run.path))
    if os.path.exists(saved):
        with open(saved) as f:
            result = json.load(f)
        if result.get("command", [])[1:] != command[1:]:  # any interpreter will do
            raise ValueError(f"{run.path} was run with other settings (its {RESULT} has "
                             f"the command): delete it or use another --output_dir")
        _LOG.info("run %s: reusing %s", spec.name, saved)
        return result
    if os.path.isdir(run.path) and os.listdir(run.path):
        raise ValueError(f"{run.path} holds an unfinished run: delete it to run "
                         f"{spec.name} again")
    os.makedirs(run.path, exist_ok=True)
    _LOG.info("run %s: %s", spec.name, shlex.join(command))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=python_path())
    start, verdicts = time.monotonic(), []
    group = processes.WorkerGroup([command], envs=[env], output="files",
                                  log_files=[(run.join("stdout.log"), run.join("stderr.log"))],
                                  grace_period_s=GRACE_S)
    with group:
        ended = group.run(stop_on_failure=False, poll_s=POLL_S,
                          should_stop=_progress_check(exp, run.metrics, start, verdicts))
    if ended.received:  # SIGTERM/SIGINT to mcnn-ttt: forwarded, the run not recorded
        raise SystemExit(ended.code)
    verdict = verdicts[0] if verdicts else None
    result = summarize(spec, exp, run, ended.exits[0].returncode, verdict,
                       _error_line(run.join("stderr.log")), time.monotonic() - start)
    atomic.write_json_atomic(saved, {**result, "command": command})
    _LOG.info("run %s: %s %s", spec.name, result["status"], result["detail"])
    return result


def _schedule_facts(run):
    """global_batch, updates_per_epoch, peak_lr and recipe fields from flags.json."""
    from mcnn_keras.train.schedule import LinearScalingSchedule  # pylint: disable=import-outside-toplevel
    plan = run.load_plan()
    cfg = run.load_config()
    peak = LinearScalingSchedule.for_run(cfg.schedule, plan["global_batch"],
                                         plan["steps_per_epoch"]).peak_lr
    return {"global_batch": plan["global_batch"], "updates_per_epoch": plan["steps_per_epoch"],
            "peak_lr": peak, "base_lr": cfg.schedule.base_lr,
            "warmup_epochs": cfg.schedule.warmup_epochs, "max_lr": cfg.schedule.max_lr,
            "dtype": cfg.model.dtype}


def summarize(spec, exp, run, exit_code, verdict, error_line, process_s):
    """One row of the table from a finished run directory."""
    from mcnn_keras.train.callbacks.target_accuracy import reaches  # pylint: disable=import-outside-toplevel
    history = _read_history(run.metrics)
    summary = {}
    if os.path.exists(run.summary):
        with open(run.summary) as f:
            summary = json.load(f)
    status, detail = classify(exit_code, verdict, error_line, history, summary, exp)
    row = dict.fromkeys(COLUMNS)
    row.update(name=spec.name, workers=spec.workers, cores=spec.cores, batch_size=spec.batch_size,
               global_batch=spec.global_batch, linear_scaling=spec.linear_scaling,
               status=status, detail=detail, epochs_run=len(history), exit_code=exit_code,
               process_s=round(process_s, 1))
    if os.path.exists(run.flags_json):
        try:
            row.update(_schedule_facts(run))
        except (KeyError, ValueError) as e:  # a flags.json of another version
            _LOG.warning("%s: %s", run.flags_json, e)
    reached = next((h for h in history if reaches(h.get("val_top1"), exp.target_accuracy)),
                   None)
    if status == "reached":
        row["epochs_to_target"] = summary.get("target_reached_epoch") or reached["epoch"]
        row["time_to_target_s"] = (summary.get("time_to_target_s")
                                   or reached.get("time_to_target_s") or reached.get("wall_s"))
        row["ttt_min"] = round(row["time_to_target_s"] / 60, 2)
    val = [h["val_top1"] for h in history if _finite(h.get("val_top1"))]
    rates = [h["images_per_s"] for h in history if _finite(h.get("images_per_s"))]
    row.update(best_val_top1=max(val, default=None), final_val_top1=val[-1] if val else None,
               images_per_s=round(statistics.median(rates), 3) if rates else None,
               train_wall_s=history[-1].get("wall_s") if history else None)
    return row
