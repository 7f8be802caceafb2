"""tf.distribute strategies from flags and TF_CONFIG, and who writes what.

Multi-worker training is one process per worker, each with a TF_CONFIG such as

    {"cluster": {"worker": ["host1:2222", "host2:2222"]},
     "task": {"type": "worker", "index": 0}}

(set by `mcnn-launch`, by Slurm via `slurm_tf_config`, or by a Kubeflow TFJob).
`make_strategy` validates TF_CONFIG before TensorFlow sees it, so a bad one is
a one-line `ValueError` instead of a hang or a stack trace, and builds the
strategy with the collective options (implementation, timeout). For
MultiWorkerMirroredStrategy it installs `keras_multiworker_fix`, without
which Keras 3 `fit` crashes with several workers.

Only the chief writes real outputs. The others must still run every
collective save (TensorFlow's checkpoint protocol), so they get a scratch
directory from `writer_dir`, removed by `cleanup_writer_dir`.

Input sharding is by file: file i goes to worker i % num_workers
(`shard_files_for_worker`, the rule of `dataset.files_for_worker`), through
`strategy.distribute_datasets_from_function`, whose `InputContext` gives
`input_pipeline_id` == `TaskInfo.worker_index`.

Usage:

    strategy = distribute.make_strategy("multi_worker_mirrored",
                                        collective_timeout_s=60)
    task = distribute.task_info(strategy)
    out_dir = distribute.writer_dir("runs/demo", task)
    ...
    distribute.cleanup_writer_dir(out_dir, "runs/demo")
"""

import dataclasses
import json
import os
import re
import shutil
import tempfile

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored")
_TASK_TYPES = ("chief", "worker", "evaluator", "ps")
_TRAINING_JOBS = ("chief", "worker")  # the tasks that take part in all-reduce


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """This process' place in the cluster.

    `worker_index` counts the training tasks with the chief (if any) first:
    the `input_pipeline_id` TensorFlow gives this worker, used for sharding.
    """

    task_type: str = "worker"
    task_index: int = 0
    worker_index: int = 0
    num_workers: int = 1
    is_chief: bool = True


SINGLE_PROCESS = TaskInfo()


def _task_from_cluster(cluster, task_type, task_index):
    has_chief = bool(cluster.get("chief"))
    num_workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if task_type == "chief":
        worker_index = 0
    elif task_type == "worker":
        worker_index = task_index + (1 if has_chief else 0)
    else:  # an evaluator or parameter server trains nothing
        worker_index = -1
    is_chief = task_type == "chief" or (task_type == "worker" and task_index == 0
                                        and not has_chief)
    return TaskInfo(task_type, task_index, worker_index, num_workers, is_chief)


def parse_tf_config(text):
    """Validates TF_CONFIG text and returns this task's `TaskInfo`.

    Raises ValueError with one line naming the problem: bad JSON, missing
    `cluster` or `task`, unknown task type, non-integer or out-of-range index,
    an address without a numeric port.
    """
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e.msg} at char {e.pos}): "
                         f"{text[:80]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    for key in ("cluster", "task"):
        if not isinstance(config.get(key), dict) or not config[key]:
            raise ValueError(f"TF_CONFIG has no '{key}' object: {text[:80]!r}")
    cluster, task = config["cluster"], config["task"]
    for job, addresses in cluster.items():
        if job not in _TASK_TYPES:
            raise ValueError(f"TF_CONFIG cluster has unknown job '{job}' "
                             f"(expected one of {', '.join(_TASK_TYPES)})")
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG cluster.{job} must be a non-empty list "
                             f"of 'host:port' addresses")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"TF_CONFIG cluster.{job} address {address!r} has no "
                                 f"valid port (expected 'host:port')")
    if not any(cluster.get(job) for job in _TRAINING_JOBS):
        raise ValueError("TF_CONFIG cluster has no 'chief' or 'worker' job")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task.type {task_type!r} is not a job of the cluster "
                         f"({', '.join(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG task.index must be an integer, got {index!r}")
    if not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task.index {index} is out of range: cluster.{task_type} "
                         f"has {len(cluster[task_type])} address(es)")
    return _task_from_cluster(cluster, task_type, index)


def task_info(strategy=None):
    """`TaskInfo` of this process under `strategy` (single-process if not multi-worker)."""
    if strategy is None or not _multi_worker(strategy):
        return SINGLE_PROCESS
    resolver = strategy.cluster_resolver
    return _task_from_cluster(resolver.cluster_spec().as_dict(), resolver.task_type,
                              int(resolver.task_id))


def _multi_worker(strategy):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def _configure_coordination_service(tf_config_text, timeout_s):
    """Bounds how long TensorFlow's coordination service waits for peers.

    MultiWorkerMirroredStrategy configures the service itself with unbounded
    (1 h+) registration and shutdown timeouts, so a worker that never comes up
    makes the others wait. When the service is already configured, the
    strategy keeps our settings; these mirror its own plus the timeouts.
    """
    from tensorflow.python.distribute import multi_worker_util  # pylint: disable=import-outside-toplevel
    from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    config = json.loads(tf_config_text)
    cluster = tf.train.ClusterSpec(config["cluster"])
    if config["task"]["type"] not in _TRAINING_JOBS or context.context().coordination_service:
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
            for job in _TRAINING_JOBS if job in cluster.jobs]
    timeout_ms = int(timeout_s * 1000)
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster),
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
    hang.
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
        parse_tf_config(tf_config)  # before TensorFlow reads it

    import tensorflow as tf  # pylint: disable=import-outside-toplevel
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
        task = parse_tf_config(tf_config)
        raise tf.errors.DeadlineExceededError(
            None, None, f"not all {task.num_workers} workers came up within {timeout} s "
            f"(this is {task.task_type} {task.task_index}; is every worker started with "
            f"the same cluster in TF_CONFIG?): {str(e).splitlines()[0]}") from None
    from mcnn_keras import keras_multiworker_fix  # pylint: disable=import-outside-toplevel
    keras_multiworker_fix.apply(strategy)
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


def shard_files_for_worker(files, task):
    """This worker's share of `files`: file i goes to worker i % num_workers.

    Raises ValueError when there are fewer files than workers.
    """
    from mcnn_keras import dataset  # pylint: disable=import-outside-toplevel
    return dataset.files_for_worker(list(files), task.worker_index, task.num_workers)


# --- Slurm -----------------------------------------------------------------

def _split_top_level(text):
    """Splits at commas that are not inside [...]."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise ValueError(f"unbalanced brackets in Slurm host list {text!r}")
    return parts + [current]


def expand_hostlist(text):
    """Expands a Slurm host list: 'node[01-03,7],gpu' -> node01 node02 node03 node7 gpu."""
    hosts = []
    for part in filter(None, _split_top_level(text.strip())):
        match = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, rest = match.groups()
        for item in ranges.split(","):
            low, _, high = item.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise ValueError(f"bad range {item!r} in Slurm host list {text!r}")
            for number in range(int(low), int(high or low) + 1):
                hosts.extend(prefix + str(number).zfill(len(low)) + tail
                             for tail in expand_hostlist(rest) or [""])
    return hosts


def expand_tasks_per_node(text, num_nodes):
    """'2(x3),1' -> [2, 2, 2, 1]; a single number applies to every node."""
    counts = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if not match:
            raise ValueError(f"bad Slurm tasks-per-node value {text!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    if len(counts) == 1:
        counts *= num_nodes
    if len(counts) != num_nodes:
        raise ValueError(f"Slurm tasks-per-node {text!r} does not match {num_nodes} nodes")
    return counts


def slurm_tf_config(environ, base_port=8888):
    """TF_CONFIG (JSON text) for this Slurm task, from a Slurm environment dict.

    Tasks are laid out as Slurm's default block distribution does (and TF's
    `SlurmClusterResolver`): tasks 0..k-1 on the first node, and so on; the
    j-th task on a node listens on `base_port + j`. Task 0 is the chief.
    """
    def need(*names):
        for name in names:
            if environ.get(name):
                return environ[name]
        raise ValueError(f"Slurm environment variable {names[0]} is not set "
                         f"(run this inside an srun step)")

    nodes = expand_hostlist(need("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"))
    per_node_text = (environ.get("SLURM_STEP_TASKS_PER_NODE")
                     or environ.get("SLURM_TASKS_PER_NODE")
                     or environ.get("SLURM_NTASKS_PER_NODE"))
    if per_node_text:
        per_node = expand_tasks_per_node(per_node_text, len(nodes))
    else:
        per_node = [1] * len(nodes)
    workers = [f"{host}:{base_port + j}" for host, n in zip(nodes, per_node) for j in range(n)]
    num_tasks = int(need("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"))
    if num_tasks != len(workers):
        raise ValueError(f"SLURM_NTASKS={num_tasks} but the node list and tasks per node "
                         f"give {len(workers)} tasks ({per_node_text or '1 per node'})")
    proc_id = int(need("SLURM_PROCID"))
    if not 0 <= proc_id < num_tasks:
        raise ValueError(f"SLURM_PROCID={proc_id} is out of range for {num_tasks} tasks")
    own_node = environ.get("SLURMD_NODENAME")
    if own_node and workers[proc_id].rpartition(":")[0] != own_node:
        raise ValueError(f"task {proc_id} runs on {own_node} but the block layout puts it "
                         f"on {workers[proc_id]}: use srun --distribution=block")
    return json.dumps({"cluster": {"worker": workers},
                       "task": {"type": "worker", "index": proc_id}})


def any_worker(strategy, flag):
    """True on every worker if `flag` is true on any worker (one tiny all-reduce).

    Lets all workers act on a local event, such as a SIGTERM that reached
    them a step apart, at the same step.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    votes = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)) > 0
