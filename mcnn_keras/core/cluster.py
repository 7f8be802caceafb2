"""The cluster of a multi-worker job, described without TensorFlow.

Multi-worker training is one process per worker, each with a TF_CONFIG such as

    {"cluster": {"worker": ["host1:2222", "host2:2222"]},
     "task": {"type": "worker", "index": 0}}

set by `mcnn-launch` (`local_tf_configs`: every worker on this host, free
ports from `free_ports`), inside a Slurm step (`slurm_tf_config`, from the
SLURM_* variables: `expand_hostlist`, `expand_tasks_per_node`), in a pod of a
Kubernetes Indexed Job (`k8s_indexed_job_tf_config`), or by a Kubeflow TFJob;
`tf_config_from_environment` picks one for `mcnn-train --tf_config_from`.
`parse_tf_config` validates one and returns this process' `TaskInfo`, raising
a one-line `ValueError` instead of letting TensorFlow hang or fail with a
stack trace.

Plain Python: nothing here imports TensorFlow, so the launcher and
`mcnn-launch --print_slurm_tf_config` stay fast. The TensorFlow side
(strategies, and the `TaskInfo` of a running strategy) is
`mcnn_keras.train.distribute`.

Usage:

    os.environ["TF_CONFIG"] = cluster.slurm_tf_config(os.environ)  # in srun
    os.environ["TF_CONFIG"] = cluster.k8s_indexed_job_tf_config(os.environ)  # in a pod
    task = cluster.parse_tf_config(os.environ["TF_CONFIG"])        # ValueError if bad
    print(task.worker_index, task.num_workers, task.is_chief)

    configs = cluster.local_tf_configs(2)   # one TF_CONFIG per local worker
"""

import dataclasses
import json
import re
import socket

TASK_TYPES = ("chief", "worker", "evaluator", "ps")
TRAINING_JOBS = ("chief", "worker")  # the tasks that take part in all-reduce


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


def task_from_cluster(cluster, task_type, task_index):
    """`TaskInfo` of task `task_type`:`task_index` of `cluster` (job -> addresses).

    `cluster` is a TF_CONFIG "cluster" dict (or `ClusterSpec.as_dict()`),
    assumed valid. `num_workers` counts the chief and worker tasks; an
    evaluator or parameter server trains nothing and gets `worker_index` -1.
    """
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
        if job not in TASK_TYPES:
            raise ValueError(f"TF_CONFIG cluster has unknown job '{job}' "
                             f"(expected one of {', '.join(TASK_TYPES)})")
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG cluster.{job} must be a non-empty list "
                             f"of 'host:port' addresses")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"TF_CONFIG cluster.{job} address {address!r} has no "
                                 f"valid port (expected 'host:port')")
    if not any(cluster.get(job) for job in TRAINING_JOBS):
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
    return task_from_cluster(cluster, task_type, index)


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


# --- Kubernetes Indexed Job (no operator) ----------------------------------------

K8S_DEFAULT_PORT = 2222


def _port(environ, default):
    """MCNN_PORT as an int, `default` when unset."""
    text = environ.get("MCNN_PORT", "").strip()
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        # Kubernetes' service links set <SERVICE>_PORT=tcp://...: a service named
        # "mcnn" would shadow ours (the manifest sets enableServiceLinks: false).
        raise ValueError(f"MCNN_PORT={text!r} is not a port number")
    return int(text)


def k8s_indexed_job_tf_config(environ):
    """TF_CONFIG (JSON text) of this pod of a Kubernetes Indexed Job.

    Pod i of an Indexed Job (completionMode: Indexed) gets JOB_COMPLETION_INDEX=i
    and the hostname `<job>-<i>`; with `subdomain: <service>` and a headless
    Service of that name, every pod resolves as `<job>-<i>.<service>`. Reads
    JOB_COMPLETION_INDEX, MCNN_NUM_WORKERS (= the Job's parallelism and
    completions), MCNN_JOB_NAME, MCNN_SERVICE_NAME and MCNN_PORT (default
    2222), all set by deploy/kubernetes/indexed_job.yaml. Pod 0 is the chief.
    """
    def need(name):
        value = environ.get(name, "").strip()
        if not value:
            raise ValueError(f"{name} is not set (--tf_config_from=k8s_indexed_job runs in a "
                             f"pod of an Indexed Job: see deploy/kubernetes/indexed_job.yaml)")
        return value

    index, count = need("JOB_COMPLETION_INDEX"), need("MCNN_NUM_WORKERS")
    if not index.isdigit() or not count.isdigit() or int(count) < 1:
        raise ValueError(f"JOB_COMPLETION_INDEX={index!r} and MCNN_NUM_WORKERS={count!r} "
                         f"must be integers (the workers >= 1)")
    if int(index) >= int(count):
        raise ValueError(f"JOB_COMPLETION_INDEX={index} is out of range for "
                         f"MCNN_NUM_WORKERS={count} (set it to the Job's completions)")
    job, service = need("MCNN_JOB_NAME"), need("MCNN_SERVICE_NAME")
    port = _port(environ, K8S_DEFAULT_PORT)
    workers = [f"{job}-{i}.{service}:{port}" for i in range(int(count))]
    return json.dumps({"cluster": {"worker": workers},
                       "task": {"type": "worker", "index": int(index)}})


TF_CONFIG_SOURCES = ("k8s_indexed_job", "slurm")


def tf_config_from_environment(source, environ):
    """TF_CONFIG text built from `environ` by `source` (one of TF_CONFIG_SOURCES)."""
    if source == "k8s_indexed_job":
        return k8s_indexed_job_tf_config(environ)
    if source == "slurm":
        port = _port(environ, None)  # else slurm_tf_config's default
        return slurm_tf_config(environ, **({} if port is None else {"base_port": port}))
    raise ValueError(f"unknown TF_CONFIG source {source!r} "
                     f"(expected one of {', '.join(TF_CONFIG_SOURCES)})")


# --- all workers on this host (mcnn-launch, tests) ------------------------------

def free_ports(count, host="127.0.0.1"):
    """`count` distinct free TCP ports on `host` (bound at once, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_tf_configs(num_workers, host="127.0.0.1", ports=None):
    """One TF_CONFIG JSON text per worker; worker 0 is the chief."""
    ports = ports or free_ports(num_workers, host)
    cluster = {"worker": [f"{host}:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(num_workers)]
