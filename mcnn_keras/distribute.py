"""tf.distribute strategies from flags and TF_CONFIG, and who writes what.

The TensorFlow side of multi-worker training; the cluster description
(TF_CONFIG, Slurm, `TaskInfo`) is the TensorFlow-free `mcnn_keras.cluster`.
`make_strategy` validates TF_CONFIG (`cluster.parse_tf_config`) before
TensorFlow sees it, so a bad one is a one-line `ValueError` instead of a hang
or a stack trace, and builds the strategy with the collective options
(implementation, timeout). It does not install `keras_multiworker_fix`,
without which Keras 3 `fit` crashes with several workers: the caller does,
with `keras_multiworker_fix.apply(strategy)`.

`in_multi_worker_mode` tells whether a strategy spans several worker
processes; `task_info` gives this process' `cluster.TaskInfo` under it.

Only the chief writes real outputs. The others must still run every
collective save (TensorFlow's checkpoint protocol), so they get a scratch
directory from `writer_dir`, removed by `cleanup_writer_dir`.

Input is per worker: `per_worker_dataset` builds each worker's own dataset
(through `strategy.distribute_datasets_from_function`, whose `InputContext`
gives `input_pipeline_id` == `TaskInfo.worker_index`), and the file list is
sharded by file index (`dataset.files_for_worker`).

Usage:

    strategy = distribute.make_strategy("multi_worker_mirrored",
                                        collective_timeout_s=60)
    keras_multiworker_fix.apply(strategy)
    task = distribute.task_info(strategy)
    out_dir = distribute.writer_dir("runs/demo", task)
    ...
    distribute.cleanup_writer_dir(out_dir, "runs/demo")
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.distribute import multi_worker_util
from tensorflow.python.eager import context

from mcnn_keras import cluster

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


def _configure_coordination_service(tf_config_text, timeout_s):
    """Bounds how long TensorFlow's coordination service waits for peers.

    MultiWorkerMirroredStrategy configures the service itself with unbounded
    (1 h+) registration and shutdown timeouts, so a worker that never comes up
    makes the others wait. When the service is already configured, the
    strategy keeps our settings; these mirror its own plus the timeouts.
    """
    config = json.loads(tf_config_text)
    cluster_spec = tf.train.ClusterSpec(config["cluster"])
    if (config["task"]["type"] not in cluster.TRAINING_JOBS
            or context.context().coordination_service):
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job,
                                                   num_tasks=cluster_spec.num_tasks(job))
            for job in cluster.TRAINING_JOBS if job in cluster_spec.jobs]
    timeout_ms = int(timeout_s * 1000)
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=timeout_ms,
        shutdown_barrier_timeout_in_ms=timeout_ms)
    # Without the register barrier the leader registers at once and then
    # waits for the missing peers forever; with it, registration fails after
    # the timeout on every task.
    context.context().coordination_service.cluster_register_with_barrier = True


def make_strategy(name, collective_implementation="AUTO", collective_timeout_s=None):
    """The tf.distribute strategy called `name` (one of `STRATEGIES`).

    For `multi_worker_mirrored`, TF_CONFIG is validated first (ValueError on
    a bad one; unset means a single worker). `collective_implementation` is
    AUTO or RING; `collective_timeout_s` (None/0: TensorFlow's default, which
    waits forever) bounds every collective and the wait for peers to
    register, so a dead or missing peer makes the survivors fail instead of
    hang. Keras `fit` with several workers also needs
    `keras_multiworker_fix.apply(strategy)`, which this does not call.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} (expected one of {', '.join(STRATEGIES)})")
    implementation = str(collective_implementation).upper()
    if implementation not in ("AUTO", "RING"):
        raise ValueError(f"unknown collective implementation {collective_implementation!r} "
                         f"(expected AUTO or RING)")
    if collective_timeout_s is not None and collective_timeout_s < 0:
        raise ValueError(f"collective timeout must be >= 0 s, got {collective_timeout_s}")
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
    if tf_config and timeout:
        _configure_coordination_service(tf_config, timeout)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=getattr(tf.distribute.experimental.CommunicationImplementation,
                               implementation),
        timeout_seconds=timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:
        if not tf_config:
            raise
        task = cluster.parse_tf_config(tf_config)
        raise tf.errors.DeadlineExceededError(
            None, None, f"not all {task.num_workers} workers came up within {timeout} s "
            f"(this is {task.task_type} {task.task_index}; is every worker started with "
            f"the same cluster in TF_CONFIG?): {str(e).splitlines()[0]}") from None
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
    """
    if task.is_chief:
        return path
    return tempfile.mkdtemp(prefix=f"mcnn-{task.task_type}{task.task_index}-scratch-")


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
