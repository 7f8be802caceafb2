"""Starts N local workers of a multi-worker job, the paper's "several workers per node".

`launch_local` runs `command` N times on this host, each process with its own
TF_CONFIG (all on 127.0.0.1, distinct free ports: `cluster.local_tf_configs`).
With `pin_cores`, worker i is bound to its own cores (`os.sched_setaffinity`
before exec) and told to use exactly that many intra-op threads
(TF_NUM_INTRAOP_THREADS; inter-op 1 for one core, else 2). Output is
forwarded line by line with a `[worker i] ` prefix. On a host with several
NUMA nodes (`numa_nodes`, read from /sys/devices/system/node), pinned
workers get their cores from one node each and their memory bound to it
(`numactl --membind=N --physcpubind=...`; without numactl a one-line warning,
and the cores are still pinned); the plan is logged. The processes are run by
`core.processes.WorkerGroup`: if a worker exits non-zero the others are
stopped (SIGTERM to each worker's process group, then SIGKILL after a grace
period) and the launcher returns that worker's code; SIGTERM and SIGINT sent
to the launcher are forwarded to every worker's whole process group.

Usage:

    code = launch_local(["mcnn-train", "--strategy=multi_worker_mirrored"],
                        num_workers=2, pin_cores=True)

Workers that want the thread counts visible to TensorFlow's Python API (it
reports 0 when only the environment variables are set, although the C++
runtime honours them) call `configure_threads_from_env()` before any op.
"""

import ctypes
import dataclasses
import os
import shutil
import signal
import subprocess
import sys

from mcnn_keras.core import cluster, processes

_PR_SET_PDEATHSIG = 1
NODE_ROOT = "/sys/devices/system/node"
NUMA_MODES = ("auto", "off")  # auto: bind to nodes when the host has several


def core_assignment(num_workers, threads_per_worker=0, available=None):
    """Disjoint core lists, one per worker, from this process' allowed cores.

    `threads_per_worker` 0 splits the cores evenly. Raises ValueError when the
    workers do not fit.
    """
    cores = sorted(available if available is not None else os.sched_getaffinity(0))
    per_worker = threads_per_worker or len(cores) // num_workers
    if per_worker < 1 or per_worker * num_workers > len(cores):
        raise ValueError(f"cannot pin {num_workers} workers x {threads_per_worker or 1} "
                         f"cores on the {len(cores)} available cores {cores}")
    return [cores[i * per_worker:(i + 1) * per_worker] for i in range(num_workers)]


def parse_cpulist(text):
    """CPU numbers of a sysfs cpulist such as '0-3,8-11'."""
    cpus = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus += range(int(first), int(last or first) + 1)
    return cpus


def numa_nodes(root=NODE_ROOT):
    """{node: [cpus]} of this host from sysfs (`root`); {} if it cannot be read."""
    nodes = {}
    try:
        names = os.listdir(root)
    except OSError:
        return {}
    for name in names:
        if name.startswith("node") and name[4:].isdigit():
            try:
                with open(os.path.join(root, name, "cpulist")) as f:
                    cpus = parse_cpulist(f.read())
            except (OSError, ValueError):
                continue
            if cpus:
                nodes[int(name[4:])] = cpus
    return dict(sorted(nodes.items()))


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one worker runs: its cores (None = any) and NUMA node (None = unbound)."""

    cores: list = None
    node: int = None


def numa_assignment(num_workers, threads_per_worker=0, available=None, nodes=None):
    """One `Placement` per worker, each worker's cores from a single NUMA node.

    Workers are spread evenly over the nodes that have allowed cores (workers
    0..k-1 on the first, and so on); `threads_per_worker` 0 gives each the
    most cores that every node can give all of its workers. ValueError when
    they do not fit.
    """
    allowed = set(available if available is not None else os.sched_getaffinity(0))
    usable = {n: sorted(allowed & set(cpus)) for n, cpus in (nodes or {}).items()}
    usable = {n: cpus for n, cpus in usable.items() if cpus}
    if not usable:
        raise ValueError(f"no NUMA node has any of the allowed cores {sorted(allowed)}")
    spread = min(num_workers, len(usable))
    counts = [num_workers // spread + (i < num_workers % spread) for i in range(spread)]
    placed = list(zip(usable.items(), counts))
    per_worker = threads_per_worker or min(len(cpus) // count for (_, cpus), count in placed)
    if per_worker < 1 or any(per_worker * count > len(cpus) for (_, cpus), count in placed):
        raise ValueError(f"cannot pin {num_workers} workers x {threads_per_worker or 1} cores "
                         f"on the NUMA nodes {usable}, one node per worker")
    return [Placement(cpus[i * per_worker:(i + 1) * per_worker], node)
            for (node, cpus), count in placed for i in range(count)]


def plan_workers(num_workers, pin_cores=False, threads_per_worker=0, numa="auto",
                 numa_root=NODE_ROOT, available=None):
    """One `Placement` per worker: NUMA nodes when pinning on a multi-node host."""
    if not pin_cores:
        return [Placement()] * num_workers
    nodes = numa_nodes(numa_root) if numa != "off" else {}
    if len(nodes) > 1:
        return numa_assignment(num_workers, threads_per_worker, available, nodes)
    return [Placement(cores) for cores in
            core_assignment(num_workers, threads_per_worker, available)]


def worker_command(command, placement, numactl):
    """`command`, prefixed to bind its memory to the placement's node when it has one
    and `numactl` (its path, or None) is installed."""
    if placement.node is None or not numactl:
        return list(command)
    return [numactl, f"--membind={placement.node}",
            f"--physcpubind={','.join(map(str, placement.cores))}", *command]


def thread_env(num_threads):
    """Environment variables giving TensorFlow `num_threads` intra-op threads."""
    return {"TF_NUM_INTRAOP_THREADS": str(num_threads),
            "TF_NUM_INTEROP_THREADS": str(1 if num_threads == 1 else 2)}


def configure_threads_from_env(environ=None):
    """Sets TF's thread pools from TF_NUM_INTRAOP/INTEROP_THREADS, if given.

    Call before the first TensorFlow op; returns (intra, inter) (0 = unset).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    environ = os.environ if environ is None else environ
    intra = int(environ.get("TF_NUM_INTRAOP_THREADS") or 0)
    inter = int(environ.get("TF_NUM_INTEROP_THREADS") or 0)
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    return intra, inter


def _child_setup(cores):
    def setup():
        # Die with the launcher, even if it is SIGKILLed.
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
        if cores:
            os.sched_setaffinity(0, cores)
    return setup


def _numactl(placements, which):
    """(numactl's path or None, why not): None unless it is installed and can bind
    memory here (a container's seccomp profile may forbid it)."""
    path = which("numactl")
    if not path:
        return None, "numactl not found"
    probe = subprocess.run(worker_command(["true"], placements[0], path), check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if probe.returncode:
        return None, f"numactl cannot bind memory here ({probe.stderr.strip()[:80]})"
    return path, ""


def _log_plan(log, placements, numactl, why_not):
    """One line per worker (node, cores, memory binding), and a warning if unbound."""
    bound = any(p.node is not None for p in placements)
    for i, p in enumerate(placements):
        where = (f"NUMA node {p.node}, cores {p.cores}, memory "
                 f"{'bound by numactl' if numactl else 'NOT bound'}" if bound
                 else f"cores {p.cores}, no NUMA binding")
        log.write(f"[launcher] plan: worker {i} -> {where}\n")
    if bound and not numactl:
        log.write(f"[launcher] warning: {why_not}: workers are pinned to their node's cores "
                  f"but their memory is not bound to it (install numactl, or --numa=off)\n")


def launch_local(command, num_workers, pin_cores=False, threads_per_worker=0,
                 grace_period_s=10.0, extra_env=None, stdout=None, stderr=None,
                 log=None, numa="auto", numa_root=NODE_ROOT, which=shutil.which):
    """Runs `command` as `num_workers` local workers; returns the job's exit code.

    0 when every worker exits 0; otherwise the exit code of the first worker
    that failed (128 + signal number if it was killed), after stopping the
    others. `stdout`/`stderr`/`log` default to this process' streams. With
    `pin_cores`, `numa` "auto" binds workers to the NUMA nodes of `numa_root`
    when there are several (`which` finds numactl), "off" never.
    """
    if num_workers < 1:
        raise ValueError(f"--num_workers must be >= 1, got {num_workers}")
    if not command:
        raise ValueError("no worker command given (put it after --)")
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    log = log or stderr
    if numa not in NUMA_MODES:
        raise ValueError(f"--numa must be one of {', '.join(NUMA_MODES)}, got {numa!r}")
    placements = plan_workers(num_workers, pin_cores, threads_per_worker, numa, numa_root)
    cores = [p.cores for p in placements]
    numactl, why_not = (_numactl(placements, which)
                        if any(p.node is not None for p in placements) else (None, ""))
    if pin_cores:
        _log_plan(log, placements, numactl, why_not)
    configs = cluster.local_tf_configs(num_workers)
    envs, threads = [], []
    for i in range(num_workers):
        env = dict(os.environ, TF_CONFIG=configs[i], PYTHONUNBUFFERED="1",
                   **(extra_env or {}))
        threads.append(len(cores[i]) if cores[i] else threads_per_worker)
        if threads[i]:
            env.update(thread_env(threads[i]))
        envs.append(env)
    group = processes.WorkerGroup(
        [worker_command(command, placements[i], numactl) for i in range(num_workers)],
        envs=envs, stdout=stdout, stderr=stderr, grace_period_s=grace_period_s,
        preexec_fns=[_child_setup(c) for c in cores])
    with group:
        group.start()
        for i, proc in enumerate(group.procs):
            log.write(f"[launcher] worker {i}: pid {proc.pid}, "
                      f"cores {cores[i] or 'any'}, threads {threads[i] or 'default'}\n")
        log.flush()

        def on_failure(index, code):
            log.write(f"[launcher] worker {index} exited with code {code}; "
                      f"stopping the others\n")
            log.flush()

        return group.wait(on_failure=on_failure).code
