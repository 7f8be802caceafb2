"""Local worker processes: start N, forward signals to their groups, stop, reap.

Every child runs in its own process group (`start_new_session`), so a signal
reaches the whole group (`os.killpg`): a wrapper script's grandchildren die
with it. `WorkerGroup.wait` returns a `GroupResult` naming the first worker
that failed (index, exit code or signal); with `stop_on_failure` the others
are then stopped: SIGTERM to each group, SIGKILL to the groups still alive
after `grace_period_s`. SIGTERM/SIGINT sent to this process while waiting
(main thread only) are forwarded to every group, and the workers stopped.

Output (`output`): "prefix" streams each line to `stdout`/`stderr` as
"[worker 0] ..." (`prefix` is formatted with the index); "capture" keeps it
for `GroupResult.exits[i].stdout/.stderr`; "files" writes worker i's to
`log_dir/worker-i.log`, or to `log_files[i]` = (stdout path, stderr path or
None for the same file); "inherit" leaves it on this process' streams.

Usage:

    group = WorkerGroup([["python", "-c", "print(1)"]] * 2,
                        envs=[{"TF_CONFIG": c} for c in configs], grace_period_s=5)
    result = group.run()                 # start, wait, stop the rest on failure
    if result.failed:
        print(result.failed.index, result.failed.code)
    sys.exit(result.code)
"""

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

OUTPUT_MODES = ("prefix", "capture", "files", "inherit")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_group(pid, sig=signal.SIGKILL):
    """Sends `sig` to the process group led by `pid`; False if it is gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def exit_code(returncode):
    """A shell-style exit code: 128 + signal number for a process killed by a signal."""
    return 128 - returncode if returncode < 0 else returncode


@dataclasses.dataclass
class WorkerExit:
    """How worker `index` ended (`returncode` as Popen reports it: -N = signal N)."""

    index: int
    pid: int
    returncode: int
    seconds: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def code(self):
        return exit_code(self.returncode)

    @property
    def signal(self):
        """The signal that killed it, or None."""
        return -self.returncode if self.returncode < 0 else None


@dataclasses.dataclass
class GroupResult:
    """Every worker's `WorkerExit`, the first failure and a signal this process got."""

    exits: list
    failed: WorkerExit = None  # the first worker seen exiting non-zero
    received: int = None  # SIGTERM/SIGINT forwarded to the workers, if any
    timed_out: bool = False

    @property
    def code(self):
        """0 if all succeeded; else the first failure's code (128 + signal received)."""
        if self.failed is not None:
            return self.failed.code
        if self.received:
            return 128 + self.received
        return max((e.code for e in self.exits), default=0)


def _forward(stream, prefix, out, lock, sink):
    for line in iter(stream.readline, ""):
        if sink is not None:
            sink.append(line)
        else:
            with lock:
                out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
                out.flush()
    stream.close()


class WorkerGroup:
    """N local child processes, each in its own process group."""

    def __init__(self, commands, envs=None, cwd=None, output="prefix", prefix="[worker {i}] ",
                 stdout=None, stderr=None, log_dir=None, log_files=None,
                 grace_period_s=10.0, preexec_fns=None):
        commands = [list(c) for c in commands]
        if not commands or any(not c for c in commands):
            raise ValueError("need at least one worker command, none of them empty")
        if envs is not None and len(envs) != len(commands):
            raise ValueError(f"{len(envs)} environments for {len(commands)} workers")
        if preexec_fns is not None and len(preexec_fns) != len(commands):
            raise ValueError(f"{len(preexec_fns)} preexec_fns for {len(commands)} workers")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
        if output == "files" and not (log_dir or log_files):
            raise ValueError('output="files" needs a log_dir or log_files')
        if log_files is not None and len(log_files) != len(commands):
            raise ValueError(f"{len(log_files)} log_files for {len(commands)} workers")
        if grace_period_s < 0:
            raise ValueError(f"grace_period_s must be >= 0, got {grace_period_s}")
        self.commands, self.envs, self.cwd = commands, envs, cwd
        self.output, self.prefix = output, prefix
        self.log_dir, self.log_files = log_dir, log_files
        self.stdout, self.stderr = stdout, stderr
        self.grace_period_s = grace_period_s
        self.preexec_fns = preexec_fns
        self.procs, self._threads, self._files, self._captured = [], [], [], []
        self._lock = threading.Lock()
        self._started = None
        self._ended, self._empty = {}, set()
        self.received = []

    # --- starting ----------------------------------------------------------------

    def start(self):
        """Starts every worker; returns their Popen objects."""
        self._started = time.monotonic()
        for i, command in enumerate(self.commands):
            self.start_one(i, command)
        return self.procs

    def start_one(self, i, command):
        kwargs = {}
        if self.output in ("prefix", "capture"):
            kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True,
                      "bufsize": 1}
        elif self.output == "files":
            if self.log_files:
                out_path, err_path = self.log_files[i]
            else:
                os.makedirs(self.log_dir, exist_ok=True)
                out_path, err_path = os.path.join(self.log_dir, f"worker-{i}.log"), None
            out = open(out_path, "w")  # pylint: disable=consider-using-with
            err = open(err_path, "w") if err_path else None  # pylint: disable=consider-using-with
            self._files += [f for f in (out, err) if f]
            kwargs = {"stdout": out, "stderr": err or subprocess.STDOUT}
        preexec = self.preexec_fns[i] if self.preexec_fns else None
        proc = subprocess.Popen(command, env=self.envs[i] if self.envs else None,  # pylint: disable=consider-using-with
                                cwd=self.cwd, start_new_session=True, preexec_fn=preexec,
                                **kwargs)
        self.procs.append(proc)
        out_err = ([], [])
        self._captured.append(out_err)
        if self.output in ("prefix", "capture"):
            streams = ((proc.stdout, self.stdout or sys.stdout, out_err[0]),
                       (proc.stderr, self.stderr or sys.stderr, out_err[1]))
            for stream, out, sink in streams:
                thread = threading.Thread(
                    target=_forward, daemon=True,
                    args=(stream, self.prefix.format(i=i), out, self._lock,
                          sink if self.output == "capture" else None))
                thread.start()
                self._threads.append(thread)
        return proc

    # --- signals -------------------------------------------------------------------

    def _groups(self):
        """Pids of the worker groups that may still have members: a worker's leader
        still running, or gone but its group not yet seen empty (while a member
        lives, the kernel does not reuse the group's id)."""
        live = set()
        for proc in self.procs:
            if proc.pid in self._empty:
                continue
            if proc.poll() is None or signal_group(proc.pid, 0):
                live.add(proc.pid)
            else:
                self._empty.add(proc.pid)
        return live

    def signal_all(self, sig):
        """Sends `sig` to every worker's process group that still has members."""
        for pid in self._groups():
            signal_group(pid, sig)

    def stop(self, grace_period_s=None):
        """SIGTERM to every group, SIGKILL to the groups alive after the grace period
        (a wrapper's children included); reaps every worker."""
        grace = self.grace_period_s if grace_period_s is None else grace_period_s
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._groups():
            time.sleep(0.05)
        self.kill()

    def kill(self):
        """SIGKILL to every worker's group at once; reaps every worker."""
        self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            self._reap(proc)

    def _reap(self, proc):
        proc.wait()
        self._ended.setdefault(proc.pid, time.monotonic())

    # --- waiting ---------------------------------------------------------------------

    def wait(self, timeout_s=None, stop_on_failure=True, poll_s=0.05, on_failure=None,
             should_stop=None):
        """Waits for the workers; returns a `GroupResult`.

        With `stop_on_failure` the first non-zero exit stops the others
        (`on_failure(index, code)` is called first, e.g. to log it); after
        `timeout_s` the workers still running are SIGKILLed and marked timed
        out. `should_stop()`, called every `poll_s` while any runs, stops them
        all (SIGTERM, grace period, SIGKILL) when it returns true.
        """
        deadline = None if timeout_s is None else self._started + timeout_s
        failed, timed_out = None, set()
        in_main = threading.current_thread() is threading.main_thread()

        def on_signal(signum, frame):
            self.received.append(signum)
            self.signal_all(signum)

        previous = ({sig: signal.signal(sig, on_signal) for sig in FORWARDED_SIGNALS}
                    if in_main else {})
        try:
            while True:
                for proc in self.procs:
                    if proc.poll() is not None:
                        self._ended.setdefault(proc.pid, time.monotonic())
                        if proc.returncode != 0 and failed is None:
                            failed = self.procs.index(proc)
                running = [p for p in self.procs if p.poll() is None]
                self._groups()  # notes the groups seen empty, before their ids are reused
                if self.received or (failed is not None and stop_on_failure):
                    if failed is not None and on_failure is not None:
                        on_failure(failed, exit_code(self.procs[failed].returncode))
                    self.stop()
                    break
                if not running:
                    break
                if should_stop is not None and should_stop():
                    self.stop()
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = {p.pid for p in running}
                    self.kill()
                    break
                time.sleep(poll_s)
        finally:
            if any(p.poll() is None for p in self.procs):
                self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.close()
        exits = [WorkerExit(i, p.pid, p.returncode, self._ended.get(p.pid, time.monotonic())
                            - self._started, "".join(self._captured[i][0]),
                            "".join(self._captured[i][1]), p.pid in timed_out)
                 for i, p in enumerate(self.procs)]
        return GroupResult(exits, exits[failed] if failed is not None else None,
                           self.received[0] if self.received else None, bool(timed_out))

    def close(self):
        for thread in self._threads:
            thread.join(timeout=5)
        for f in self._files:
            f.close()

    def run(self, timeout_s=None, stop_on_failure=True, on_failure=None, should_stop=None,
            poll_s=0.05):
        """`start`, then `wait`: the workers' `GroupResult`."""
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self.wait(timeout_s, stop_on_failure, poll_s, on_failure, should_stop)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if any(p.poll() is None for p in self.procs):
            self.stop()
        self.close()
