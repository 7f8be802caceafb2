"""Paths on object storage: s3:// (and hdfs://, az://) through tensorflow-io.

TensorFlow reads local paths and gs:// by itself. The other schemes come from
tensorflow-io's file-system plugin, whose last release (0.37.1, 2024) loads
only on TensorFlow 2.16: on newer TensorFlow it imports but its plugin library
fails to load (undefined symbols), and `s3://` then fails deep inside tf.data
with "File system scheme 's3' not implemented". So every place where paths
enter (the binaries' flags, `dataset.list_files`, training's model_dir,
evaluation, the converters' outputs) calls `require_filesystem` first: it
imports tensorflow-io only when such a path is used, and otherwise raises one
`ValueError` line saying what works (TensorFlow 2.16 + tensorflow-io 0.37.1:
`pip install 'mcnn-keras[s3]'`) and what to do instead (stage the files to
local disk, or use gs://).

The endpoint and credentials come from the environment, as the AWS C++ SDK
inside tensorflow-io reads it: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
(or AWS_PROFILE), AWS_REGION, and S3_ENDPOINT for an S3-compatible server
(`http://host:9000` for plain HTTP: tensorflow-io has no S3_USE_HTTPS),
S3_VERIFY_SSL=0, S3_CA_FILE.

tensorflow-io 0.37.1 aborts at interpreter exit once it has talked to S3
("pure virtual method called", exit status 134): `plugin_loaded()` tells
`cli.common.run_main` to leave through `os._exit` with the real status.

Usage:

    storage.require_filesystem("s3://bucket/data/train-*.tfrecord")  # ValueError if it cannot work
    storage.require_filesystem([cfg.data.train_files, cfg.runtime.model_dir])
    storage.plugin_loaded()     # True once tensorflow-io's plugin is in this process
"""

import logging
import os
import re
import sys
import warnings

_LOG = logging.getLogger(__name__)

# The schemes tensorflow-io's plugin adds; gs://, file:// and ram:// are TensorFlow's own.
PLUGIN_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az")
WORKING_PAIR = "TensorFlow 2.16 + tensorflow-io 0.37.1"
INSTALL_HINT = "pip install 'mcnn-keras[s3]'"
NOT_INSTALLED = "tensorflow-io is not installed"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_loaded = False


def scheme(path):
    """The URL scheme of `path` ('s3' for 's3://b/k'), '' for a local path."""
    match = _SCHEME.match(str(path).strip())
    return match.group(1).lower() if match else ""


def is_remote(path):
    """Whether `path` is a URL (s3://, gs://, ...): read and written through
    tf.io.gfile, never with os calls (which would make a local `s3:` folder)."""
    return bool(scheme(path))


def absolute(path):
    """`path` made absolute if local; a URL as it is."""
    return path if is_remote(path) else os.path.abspath(path)


def open_file(path, mode="r"):
    """`path` opened: `open` for a local path, `tf.io.gfile.GFile` for a URL
    (tensorflow-io's plugin loaded first for s3://, or one line why not)."""
    if not is_remote(path):
        return open(path, mode)  # pylint: disable=unspecified-encoding
    require_filesystem(path)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile.GFile(path, mode)


def _paths(paths):
    """Flattens a path, comma-separated globs, or an iterable of those (None skipped)."""
    if paths is None:
        return []
    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        text = paths.decode() if isinstance(paths, bytes) else str(paths)
        return [p.strip() for p in text.split(",") if p.strip()]
    return [p for item in paths for p in _paths(item)]


def plugin_schemes(paths):
    """The sorted schemes among `paths` that need tensorflow-io's plugin."""
    return sorted({scheme(p) for p in _paths(paths)} & set(PLUGIN_SCHEMES))


def plugin_loaded():
    """True once tensorflow-io's file-system plugin was loaded in this process."""
    return _loaded or "tensorflow_io" in sys.modules


def _registered():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return set(tf.io.gfile.get_registered_schemes())


def _load_plugin():
    """Imports tensorflow-io; returns why its plugin did not load ('' if it did)."""
    global _loaded  # pylint: disable=global-statement
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import tensorflow_io  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            return NOT_INSTALLED
        except Exception as e:  # pylint: disable=broad-except
            return f"importing tensorflow-io failed ({type(e).__name__}: {e})"
    _loaded = True
    for warning in caught:  # tensorflow-io warns instead of raising
        text = str(warning.message)
        if "libtensorflow_io_plugins" in text or "plugins are not loaded" in text:
            symbol = re.search(r"undefined symbol: (\S+?)[,'\]\s]", text)
            return ("its plugin library does not load"
                    + (f" (undefined symbol {symbol.group(1)})" if symbol else ""))
    return ""


def _version():
    from importlib import metadata  # pylint: disable=import-outside-toplevel
    try:
        return metadata.version("tensorflow-io")
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def require_filesystem(paths):
    """Makes sure TensorFlow can open every path in `paths`; returns the plugin schemes used.

    `paths`: a path, comma-separated globs, or an iterable of those. Local
    and gs:// paths need nothing (nothing is imported). For s3:// & co. this
    loads tensorflow-io's plugin once; where it cannot load, raises a one-line
    ValueError before any work starts.
    """
    needed = plugin_schemes(paths)
    if not needed:
        return []
    missing = [s for s in needed if s not in _registered()]
    if missing:
        reason = _load_plugin()
        missing = [s for s in missing if s not in _registered()]
        if missing:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            if reason != NOT_INSTALLED:
                reason = f"tensorflow-io {_version()}: " + (
                    reason or "the scheme is still not registered")
            raise ValueError(
                f"{', '.join(s + '://' for s in missing)} paths need tensorflow-io's "
                f"file-system plugin, which cannot load here (TensorFlow {tf.__version__}, "
                f"{reason}); it works with {WORKING_PAIR} only ({INSTALL_HINT} in a fresh "
                f"virtualenv); otherwise stage the files to local disk, or use gs://, which "
                f"TensorFlow has built in")
        _LOG.debug("tensorflow-io loaded for %s", ", ".join(needed))
    return needed
