"""Imports TensorFlow without its start-up notices on CPU machines.

The `tensorflow` wheel for x86-64 Linux is the CUDA build. Importing it and
first listing devices prints, before TensorFlow's C++ logging is configured
(so TF_CPP_MIN_LOG_LEVEL does not apply to most of it):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    To enable the following instructions: AVX2 ..., rebuild TensorFlow with ...
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

(the first three twice: libtensorflow_framework.so.2 and
_pywrap_profiler_plugin.so each carry their own copy of that code).
TensorFlow 2.16 (the `s3` extra's) stamps lines differently and adds, at
any log level below 2 and on every machine (tensorflow/tensorflow#62075):

    2026-11-24 07:54:17.812834: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered
    (the same for cuDNN and cuBLAS)
    2026-11-24 07:54:18.689232: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: Could not find TensorRT
 On a CPU
machine none of them is a problem, yet the last one reads like an error.

`import_tensorflow()` sets TF_CPP_MIN_LOG_LEVEL=1 unless the user set it (C++
INFO lines off for the whole run, as run_main does for Python logging), then
imports TensorFlow and lists its devices with fd 2 going through a filter
that drops exactly these lines and passes every other byte through. The
cuInit failure is dropped only when the CUDA stub said that this machine has
no CUDA driver: on a GPU machine whose driver is broken it still shows. The
filter is a forked process, so whatever TensorFlow writes just before an
abort still reaches the terminal.

Usage (run_main does this before calling a binary's `main`):

    tf = quiet_tf.import_tensorflow()

`verbose=True`, or TF_CPP_MIN_LOG_LEVEL=0 in the environment, imports
TensorFlow plainly: every line shows.
"""

import contextlib
import os
import re
import signal
import sys
import time

_STAMP = rb"\d{4} [0-9:.]+\s+\d+ "  # absl's "0000 00:00:1795.123   4242 "
_ABSL_PREAMBLE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR")
_ONEDNN = re.compile(rb"I" + _STAMP + rb"port\.cc:\d+\] oneDNN custom operations are on\. .*")
_NO_DRIVER = re.compile(rb"I" + _STAMP + rb"cudart_stub\.cc:\d+\] Could not find cuda drivers "
                        rb"on your machine, GPU will not be used\.")
_CPU_FEATURES = re.compile(rb"I" + _STAMP + rb"cpu_feature_guard\.cc:\d+\] This TensorFlow "
                           rb"binary is optimized to use available CPU instructions in "
                           rb"performance-critical operations\.")
_CPU_FEATURES_2 = re.compile(rb"To enable the following instructions: [A-Za-z0-9_ ]+, in other "
                             rb"operations, rebuild TensorFlow with the appropriate compiler "
                             rb"flags\.")
_OLD_STAMP = rb"\d{4}-\d\d-\d\d [0-9:.]+: "  # TF 2.16: "2026-11-24 07:54:17.812834: "
_REGISTERED_TWICE = re.compile(
    _OLD_STAMP + rb"E \S+/cuda_(fft|dnn|blas)\.cc:\d+\] Unable to register cu(FFT|DNN|BLAS) "
    rb"factory: Attempting to register factory for plugin cu(FFT|DNN|BLAS) when one has "
    rb"already been registered")
_NO_TENSORRT = re.compile(_OLD_STAMP + rb"W \S+/py_utils\.cc:\d+\] TF-TRT Warning: Could "
                          rb"not find TensorRT")
_CUINIT = re.compile(rb"E" + _STAMP + rb"cuda_platform\.cc:\d+\] failed call to cuInit: .*")


class StartupFilter:
    """Decides line by line (bytes, without the newline) what stays on stderr."""

    def __init__(self):
        self.no_cuda_driver = False
        self._after_cpu_features = False

    def keep(self, line):
        line = line.rstrip(b"\r")
        after_cpu_features, self._after_cpu_features = self._after_cpu_features, False
        if _NO_DRIVER.fullmatch(line):
            self.no_cuda_driver = True
            return False
        if _CPU_FEATURES.fullmatch(line):
            self._after_cpu_features = True
            return False
        if after_cpu_features and _CPU_FEATURES_2.fullmatch(line):
            return False
        if _CUINIT.fullmatch(line):
            return not self.no_cuda_driver
        return not any(pattern.fullmatch(line) for pattern in (
            _ABSL_PREAMBLE, _ONEDNN, _REGISTERED_TWICE, _NO_TENSORRT))


def _write_all(fd, data):
    with contextlib.suppress(OSError):  # stderr closed: keep draining the pipe
        while data:
            data = data[os.write(fd, data):]


def _forward(read_fd, write_fd):
    """The filter process: reads `read_fd` to EOF, writes the kept lines."""
    keep = StartupFilter().keep
    pending = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if keep(line))
        if kept:
            _write_all(write_fd, kept)
    if pending and keep(pending):
        _write_all(write_fd, pending)


@contextlib.contextmanager
def filtered_stderr():
    """Within the block, fd 2 (C++ and Python alike) goes through StartupFilter.

    Does nothing where fork is unavailable. Only for short blocks that start
    no long-lived subprocesses (they would inherit the filter's pipe).
    """
    if not hasattr(os, "fork"):
        yield
        return
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # The filter: outlives the parent if it dies, ends at EOF.
        try:
            os.close(write_fd)
            with contextlib.suppress(ValueError, OSError):  # Ctrl-C is for the parent.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _forward(read_fd, 2)
        finally:
            os._exit(0)  # pylint: disable=protected-access
    os.close(read_fd)
    saved = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # Closes the last write end: the filter sees EOF.
        os.close(saved)
        # Wait for it so that its output precedes ours; give up after 10 s
        # (a subprocess started in the block still holds the pipe).
        deadline = time.monotonic() + 10
        with contextlib.suppress(ChildProcessError):
            while not os.waitpid(pid, os.WNOHANG)[0] and time.monotonic() < deadline:
                time.sleep(0.002)


def import_tensorflow(verbose=False):
    """Imports TensorFlow and lists its devices, without the CPU start-up notices.

    Sets TF_CPP_MIN_LOG_LEVEL=1 if unset (C++ warnings and errors still show).
    Does not initialise the runtime: thread pools can still be configured.
    Plain import when `verbose`, when TF_CPP_MIN_LOG_LEVEL=0 is set, or when
    TensorFlow is already imported. Returns the `tensorflow` module.
    """
    verbose = verbose or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"
    if "tensorflow" in sys.modules or verbose:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    with filtered_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.config.list_physical_devices()  # cuInit happens here, not at import.
    return tf
