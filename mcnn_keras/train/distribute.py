"""tf.distribute strategies from flags and TF_CONFIG, and who writes what.

The TensorFlow side of multi-worker training; the cluster description
(TF_CONFIG, Slurm, `TaskInfo`) is the TensorFlow-free `mcnn_keras.core.cluster`.
`make_strategy` validates TF_CONFIG (`cluster.parse_tf_config`) before
TensorFlow sees it, so a bad one is a one-line `ValueError` instead of a hang
or a stack trace, and builds the strategy with the collective options
(implementation, timeout). It does not install `keras_multiworker_fix`,
without which Keras 3 `fit` crashes with several workers: the caller does,
with `keras_multiworker_fix.apply(strategy)`.

`in_multi_worker_mode` tells whether a strategy spans several worker
processes; `task_info` gives this process' `cluster.TaskInfo` under it.

Start-up: workers of a cluster start minutes apart, so `make_strategy` waits
for its peers up to `startup_timeout_s`, saying every ~30 s whom it waits for
(task and address; the first time after 10 s), then fails with one line naming
the workers that never came. TensorFlow holds the GIL while the strategy
constructor waits, so no Python thread can speak meanwhile: a forked child
does (`_waiting_reports`), probing the peers' ports with a TCP connect.

Only the chief writes real outputs. The others must still run every
collective save (TensorFlow's checkpoint protocol), so they get a scratch
directory from `writer_dir`, removed by `cleanup_writer_dir`.

Input is per worker: `per_worker_dataset` builds each worker's own dataset
(through `strategy.distribute_datasets_from_function`, whose `InputContext`
gives `input_pipeline_id` == `TaskInfo.worker_index`), and the file list is
sharded by file index (`dataset.files_for_worker`).

Usage:

    strategy = distribute.make_strategy("multi_worker_mirrored",
                                        collective_timeout_s=60, startup_timeout_s=600)
    keras_multiworker_fix.apply(strategy)
    task = distribute.task_info(strategy)
    out_dir = distribute.writer_dir("runs/demo", task)
    ...
    distribute.cleanup_writer_dir(out_dir, "runs/demo")
"""

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time

import tensorflow as tf
try:  # where TensorFlow 2.21 keeps it (TSL moved under XLA)
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
except ImportError:  # TensorFlow 2.16 (the tensorflow-io pair)
    from tensorflow.tsl.protobuf import coordination_config_pb2
from tensorflow.python.distribute import multi_worker_util
from tensorflow.python.eager import context

from mcnn_keras.core import cluster
from mcnn_keras.train import leftovers

_LOG = logging.getLogger(__name__)
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored")


def in_multi_worker_mode(strategy):
    """True for a MultiWorkerMirroredStrategy with more than one worker process.

    The same as TensorFlow's private `strategy.extended._in_multi_worker_mode()`
    (whose worker count TensorFlow fixes when the strategy is built), through
    public attributes: the replicas in sync, over all workers, are
    `len(worker_devices)` (this worker's) times the number of workers. False
    for any other strategy and for None. (Counting the chief and worker tasks
    of `strategy.cluster_resolver` would not be the same: that resolver
    re-reads TF_CONFIG on every call, and an evaluator task's strategy counts
    evaluators.)
    """
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices))


def task_info(strategy=None):
    """This process' `cluster.TaskInfo` under `strategy` (SINGLE_PROCESS if not multi-worker)."""
    if strategy is None or not in_multi_worker_mode(strategy):
        return cluster.SINGLE_PROCESS
    resolver = strategy.cluster_resolver
    return cluster.task_from_cluster(resolver.cluster_spec().as_dict(), resolver.task_type,
                                     int(resolver.task_id))


def _configure_coordination_service(tf_config_text, startup_timeout_s, collective_timeout_s):
    """Bounds how long TensorFlow's coordination service waits for peers.

    MultiWorkerMirroredStrategy configures the service itself with unbounded
    (1 h+) registration and shutdown timeouts, so a worker that never comes up
    makes the others wait. When the service is already configured, the
    strategy keeps our settings; these mirror its own plus the timeouts:
    registration gives up after `startup_timeout_s`, the shutdown barrier
    after `collective_timeout_s` (None: TensorFlow's default).
    """
    config = json.loads(tf_config_text)
    cluster_spec = tf.train.ClusterSpec(config["cluster"])
    if (config["task"]["type"] not in cluster.TRAINING_JOBS
            or context.context().coordination_service):
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job,
                                                   num_tasks=cluster_spec.num_tasks(job))
            for job in cluster.TRAINING_JOBS if job in cluster_spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=int(startup_timeout_s * 1000),
        shutdown_barrier_timeout_in_ms=int((collective_timeout_s or 0) * 1000))
    # Without the register barrier the leader registers at once and then
    # waits for the missing peers forever; with it, registration fails after
    # the timeout on every task. (TensorFlow 2.16's config has no such field.)
    service = context.context().coordination_service
    if "cluster_register_with_barrier" in service.DESCRIPTOR.fields_by_name:
        service.cluster_register_with_barrier = True


# --- Waiting for peers at start-up -------------------------------------------------

WAIT_REPORT_FIRST_S, WAIT_REPORT_EVERY_S = 10, 30


def _peers(tf_config_text):
    """[(name, address)] of the other training tasks, e.g. ("worker 1", "host:2222")."""
    config = json.loads(tf_config_text)
    me = (config["task"]["type"], config["task"]["index"])
    return [(f"{job} {index}", address) for job in cluster.TRAINING_JOBS
            for index, address in enumerate(config["cluster"].get(job, []))
            if (job, index) != me]


def _unreachable(peers, timeout_s=1.0):
    """The `peers` whose address refuses a TCP connection: their server is not up."""
    down = []
    for name, address in peers:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        except OSError:
            down.append((name, address))
    return down


def _names(peers):
    return ", ".join(f"{name} at {address}" for name, address in peers)


def _report_waiting(peers, limit_s, parent):
    """The forked child: logs whom we wait for until the parent kills it or dies."""
    limit = f"giving up after {limit_s:g}s" if limit_s else "no time limit"
    started, due = time.monotonic(), WAIT_REPORT_FIRST_S
    while os.getppid() == parent:
        waited = time.monotonic() - started
        if waited < due:
            time.sleep(min(1.0, due - waited))
            continue
        who = _names(_unreachable(peers)) or (
            "the other workers to join (all answer; same cluster in their TF_CONFIG?)")
        _LOG.info("waiting for %s (%.0fs; %s, --startup_timeout)", who, waited, limit)
        due += WAIT_REPORT_EVERY_S


@contextlib.contextmanager
def _waiting_reports(peers, limit_s):
    """While the body waits for `peers`, a forked child says whom we wait for.

    The strategy constructor holds the GIL while it waits (a Python thread
    never runs), so the reports come from a child process, forked before
    TensorFlow starts its server; it only probes ports and logs.
    """
    if not peers or not hasattr(os, "fork"):
        yield
        return
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as e:  # no reports then, but the wait itself is unchanged
        _LOG.warning("cannot report whom we wait for (fork: %s)", e)
        yield
        return
    if pid == 0:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):  # not the parent's handlers
                signal.signal(signum, signal.SIG_DFL)
            _report_waiting(peers, limit_s, parent)
        finally:
            os._exit(0)  # pylint: disable=protected-access
    try:
        yield
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _startup_failure(error, tf_config_text, peers, limit_s):
    """`error` (registration timed out) as one line naming the missing workers.

    The coordination leader's error names the tasks that did not register;
    elsewhere the peers whose port does not answer are the missing ones.
    """
    task = cluster.parse_tf_config(tf_config_text)
    text = str(getattr(error, "message", error))
    named = set()
    if "timed out task names:" in text:
        named = set(re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)",
                               text.split("timed out task names:", 1)[1]))
    missing = [(n, a) for n, a in peers if tuple(n.split()) in named] or _unreachable(peers)
    who = (f"no word from {_names(missing)}" if missing else
           "every peer answers but not all joined (is the cluster the same in every "
           "worker's TF_CONFIG?)")
    within = f" within {limit_s:g} s" if limit_s else ""
    return type(error)(None, None, (
        f"not all {task.num_workers} workers came up{within}: {who} (this is "
        f"{task.task_type} {task.task_index}; start every worker, or raise "
        f"--startup_timeout)"))


def _server_failure(error, tf_config_text):
    """`error` (TensorFlow could not start this worker's server) naming the address."""
    config = json.loads(tf_config_text)
    job, index = config["task"]["type"], config["task"]["index"]
    address = config["cluster"][job][index]
    return type(error)(None, None, (
        f"cannot start this worker's server at {address} ({job} {index} in TF_CONFIG): "
        f"the port is in use (another process, or an earlier run still alive?); free "
        f"it or give this worker another port"))


def _check_strategy_arguments(name, collective_implementation, collective_timeout_s,
                              startup_timeout_s):
    """ValueError naming a bad argument of `make_strategy`; the implementation's name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} (expected one of {', '.join(STRATEGIES)})")
    implementation = str(collective_implementation).upper()
    if implementation not in ("AUTO", "RING"):
        raise ValueError(f"unknown collective implementation {collective_implementation!r} "
                         f"(expected AUTO or RING)")
    for what, value in (("collective", collective_timeout_s), ("startup", startup_timeout_s)):
        if value is not None and value < 0:
            raise ValueError(f"{what} timeout must be >= 0 s, got {value}")
    return implementation


def make_strategy(name, collective_implementation="AUTO", collective_timeout_s=None,
                  startup_timeout_s=None):
    """The tf.distribute strategy called `name` (one of `STRATEGIES`).

    For `multi_worker_mirrored`, TF_CONFIG is validated first (ValueError on
    a bad one; unset means a single worker). `collective_implementation` is
    AUTO or RING; `collective_timeout_s` (None/0: TensorFlow's default, which
    waits forever) bounds every collective, so a peer that is alive but stuck
    makes the others fail instead of hang. (A dead peer makes them fail anyway:
    the coordination service's heartbeats, about 10 s.) The bound has a cost:
    TensorFlow 2.21 (not 2.16) starts one thread per collective that sleeps
    for the whole timeout (measured: 1 170 threads per worker after 80 small
    steps with 600 s; at 128 x 128 a run died after 12 epochs, unable to
    start more), so it is off by default and best kept to a minute or two.
    `startup_timeout_s` (None/0: the collective timeout) bounds the wait for
    every peer to start; meanwhile this worker logs whom it waits for, and at
    the end fails naming them. Keras `fit` with several workers also needs
    `keras_multiworker_fix.apply(strategy)`, which this does not call.
    """
    implementation = _check_strategy_arguments(name, collective_implementation,
                                               collective_timeout_s, startup_timeout_s)
    tf_config = os.environ.get("TF_CONFIG", "").strip()
    if name == "multi_worker_mirrored" and tf_config:
        cluster.parse_tf_config(tf_config)  # before TensorFlow reads it

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()

    timeout = collective_timeout_s or None
    startup = startup_timeout_s or timeout
    peers = []
    if tf_config:
        if startup:
            _configure_coordination_service(tf_config, startup, timeout)
        if cluster.parse_tf_config(tf_config).worker_index >= 0:
            peers = _peers(tf_config)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=getattr(tf.distribute.experimental.CommunicationImplementation,
                               implementation),
        timeout_seconds=timeout)
    try:
        with _waiting_reports(peers, startup):
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:
        if not tf_config:
            raise
        raise _startup_failure(e, tf_config, peers, startup) from None
    except tf.errors.UnknownError as e:
        if tf_config and "Could not start gRPC server" in str(e):
            raise _server_failure(e, tf_config) from None
        raise
    return strategy


def peer_failure(error):
    """`error` (a collective failing in multi-worker training) with a clear message.

    A dead or unreachable peer surfaces as a TensorFlow error whose first line
    is "Graph execution error:"; this keeps the error class and puts the
    diagnosis and the root cause on the first line.
    """
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()
             if line.strip() and not line[:1].isspace()
             and not line.startswith(("Graph execution error", "Detected at node"))]
    cause = lines[0] if lines else type(error).__name__
    message = (f"lost contact with another worker (it died, was killed or is unreachable); "
               f"restart all workers to resume from the last checkpoint. Cause: {cause}")
    return type(error)(getattr(error, "node_def", None), getattr(error, "op", None), message)


PEER_FAILURE_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError",
                       "CancelledError")


def writer_dir(path, task):
    """Where this worker writes `path`: itself on the chief, else a fresh scratch dir.

    The scratch dir lies outside `path` (under the system temp dir) so that
    non-chief workers leave nothing in the model directory, even if killed.
    Its name holds this process' pid and host (`leftovers.scratch_prefix`), so
    that a later run removes it once its owner is gone
    (`leftovers.remove_leftovers`), never while the owner lives.
    """
    if task.is_chief:
        return path
    prefix = leftovers.scratch_prefix(task.task_type, task.task_index)
    return tempfile.mkdtemp(prefix=prefix)


def cleanup_writer_dir(written_dir, path):
    """Deletes a non-chief's scratch dir (`written_dir` != `path`); else nothing."""
    if os.path.abspath(written_dir) != os.path.abspath(path):
        shutil.rmtree(written_dir, ignore_errors=True)


def per_worker_dataset(strategy, make, per_replica_batch):
    """Builds each worker's own input with `make(worker, num_workers, batch)`.

    Under a multi-worker strategy this goes through
    `distribute_datasets_from_function`, whose batches are per replica and
    which does no auto-sharding of its own (the file list is sharded by
    `make`). In a single process `make(0, 1, batch)` is returned as it is.
    """
    if in_multi_worker_mode(strategy):
        def fn(ctx):
            return make(ctx.input_pipeline_id, ctx.num_input_pipelines,
                        ctx.get_per_replica_batch_size(
                            per_replica_batch * strategy.num_replicas_in_sync))
        return strategy.distribute_datasets_from_function(fn)
    return make(0, 1, per_replica_batch)


def any_worker(strategy, flag):
    """True on every worker if `flag` is true on any worker (one tiny all-reduce).

    Lets all workers act on a local event, such as a SIGTERM that reached
    them a step apart, at the same step.
    """
    votes = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)) > 0
