"""The converters' worker processes: jobs run in a spawned pool, deaths named.

Both passes of a conversion (statistics per plate, then shards) run their
jobs through `run_jobs`, in this process (`pool=None`) or in a `WorkerPool`
of spawned processes. A worker that dies (the out-of-memory killer's
SIGKILL) stops the job with `WorkerDied`, one line naming the plate or shard
it was converting, never a hang; shards it was writing leave no temporary.

Usage:

    pool = WorkerPool(2)
    try:
        for result in run_jobs(shard_job, jobs, pool, progress, total, "shards",
                               cleanup_dirs=[out], names=[f"shard {j[0]}" for j in jobs]):
            ...
    finally:
        pool.close()
"""

import concurrent.futures
import ctypes
import multiprocessing
import os
import signal

import tqdm

from mcnn_keras.io import atomic


def run_jobs(function, jobs, pool, progress, total, desc, cleanup_dirs, names):
    """Runs jobs in `pool` (or in-process if None); yields results as they finish.

    Each result's last element is its number of fields (for the progress
    bar). `names` ("plate X", "shard path") say in an error which job a dead
    worker ran; on any error the temporaries in `cleanup_dirs` are removed.
    """
    bar = tqdm.tqdm(total=total, desc=desc, unit="field", disable=not progress)
    try:
        results = (pool.imap_unordered(function, jobs, names) if pool and len(jobs) > 1
                   else map(function, jobs))
        for result in results:
            bar.update(result[-1])
            yield result
    except BaseException:
        if pool:  # the other workers finish their job before we clean up after them
            pool.close()
        for directory in cleanup_dirs:  # shards a stopped worker was writing
            atomic.remove_temporaries(directory)
        raise
    finally:
        bar.close()


_STARTED = None  # in a pool worker: where it says which job it starts


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent):
    """Linux: SIGKILL this worker when the converter that started it dies.

    A converter killed from outside (kill -9, the OOM killer, a scheduler's
    hard stop) cannot stop its pool; without this its workers would convert
    on into a directory nobody finishes. What they were writing is a
    temporary the next run removes.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the converter's own close() must do
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)  # pylint: disable=protected-access


def _init_worker(started, parent):
    global _STARTED  # pylint: disable=global-statement
    _STARTED = started
    _die_with_parent(parent)


def _tracked(function, name, job):
    _STARTED.put((os.getpid(), name))
    return function(job)


class WorkerDied(ValueError):
    """A converter worker process died (killed, e.g. out of memory).

    A ValueError, so that the binary reports it in one line.
    """


class WorkerPool:
    """Spawned worker processes (each imports TensorFlow once) for both passes.

    A dead worker (the OOM killer's SIGKILL) breaks a ProcessPoolExecutor
    (multiprocessing.Pool would wait forever for its job). Each job says
    which process runs it, so the error names the plate or shard that died.
    """

    def __init__(self, workers):
        context = multiprocessing.get_context("spawn")
        self._started = context.SimpleQueue()
        self._executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker,
            initargs=(self._started, os.getpid()))

    def imap_unordered(self, function, jobs, names):
        """Yields each job's result as it finishes; WorkerDied if a worker dies."""
        futures = {self._executor.submit(_tracked, function, name, job): name
                   for name, job in zip(names, jobs)}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except concurrent.futures.process.BrokenProcessPool:
            raise WorkerDied(self._lost_job(futures)) from None
        finally:
            for future in futures:  # after an error, queued jobs never start
                future.cancel()

    def _lost_job(self, futures):
        """What died: the job of the worker that died, by exit status."""
        # Private, but the only record of the workers' exit codes: the one
        # killed has its signal, the others the executor's SIGTERM.
        processes = dict(getattr(self._executor, "_processes", None) or {})
        self._executor.shutdown(wait=True)  # reaps every worker
        running = {}
        while not self._started.empty():
            pid, name = self._started.get()
            running[pid] = name  # a worker's last job is the one it ran
        finished = {name for future, name in futures.items()
                    if future.done() and not future.cancelled() and not future.exception()}
        running = {pid: name for pid, name in running.items() if name not in finished}
        dead = {pid: p.exitcode for pid, p in processes.items()
                if p.exitcode not in (None, 0, -signal.SIGTERM)}
        how = ", ".join(f"pid {pid}, " + (f"signal {-code}" if code < 0 else f"exit {code}")
                        for pid, code in dead.items())
        lost = [running[pid] for pid in dead if pid in running] or sorted(running.values())
        what = (f"while converting {' or '.join(lost)}" if lost else "between jobs")
        return (f"a converter worker process died{f' ({how})' if how else ''} {what}: "
                f"killed, e.g. for lack of memory (try fewer --workers)? Re-run the same "
                f"command to resume: finished shards are kept")

    def close(self):
        """Lets running jobs finish, drops queued ones, ends the processes."""
        self._executor.shutdown(wait=True, cancel_futures=True)
