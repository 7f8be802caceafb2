"""What every binary shares: --help, quiet start-up, one-line errors, threads.

Usage (in a binary):

    def main(argv):
        common.configure_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)
        ...

    def run():
        common.run_main(main)          # or run_main(main, help_sections=[...])

Importing this module does not import TensorFlow: `--help` is instant, and
run_main imports TensorFlow quietly (cli/quiet_tf.py) before `main`.
"""

import logging as std_logging
import os
import re
import sys
import traceback

from absl import app, flags, logging

from mcnn_keras.io import atomic
from mcnn_keras.io import storage


def error_line(exc):
    """A one-line description of an error, without TensorFlow's graph noise."""
    message = getattr(exc, "message", None) or str(exc)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    # tf.debugging.Assert says "assertion failed: [source] [message]", possibly
    # deep inside a "Graph execution error" report.
    assertion = re.search(r"assertion failed: \[(.*?)\] \[(.*?)\]", message)
    if assertion:
        return f"{assertion.group(1)}: {assertion.group(2)}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return first or type(exc).__name__


def _is_expected(exc):
    """Bad input or a full disk rather than a bug: ValueError, FileNotFoundError,
    `atomic.WriteError`, tf.errors.OpError."""
    tf = sys.modules.get("tensorflow")
    return isinstance(exc, (ValueError, FileNotFoundError, atomic.WriteError)) or (
        tf is not None and isinstance(exc, tf.errors.OpError))


HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")


def wants_help(argv):
    """True if argv (before any `--`) asks for this binary's help."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg in HELP_ARGS:
            return True
    return False


def _module_flags(module_name, flag_values):
    """The flags `module_name` defined, in definition order.

    Under `python -m`, absl files the main module's flags under sys.argv[0].
    """
    names = [module_name]
    if module_name == "__main__":
        names += [sys.argv[0], getattr(sys.modules.get("__main__"), "__file__", None)]
    by_module = flag_values.flags_by_module_dict()
    found = []
    for name in names:
        found += [f for f in by_module.get(name, ()) if f not in found]
    return found


def _is_required(flag):
    message = f"Flag --{flag.name} must have a value other than None."
    return any(getattr(v, "message", None) == message for v in flag.validators)


def format_flag(flag, width):
    """One flag as absl's --help shows it: `--name: help`, then default, syntax."""
    indent = "    "
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    lines = [flags.text_wrap(f"{name}: {flag.help or ''}".rstrip(), width,
                             indent=indent, firstline_indent="  ")]
    if _is_required(flag):
        lines.append(flags.text_wrap("(required)", width, indent=indent))
    if flag.default_as_str:
        lines.append(flags.text_wrap(f"(default: {flag.default_as_str})", width, indent=indent))
    if flag.parser.syntactic_help:
        lines.append(flags.text_wrap(f"({flag.parser.syntactic_help})", width, indent=indent))
    return "\n".join(lines)


def help_text(main, help_sections=None, flag_values=flags.FLAGS, width=None):
    """The module docstring of `main`, then its flags by section (see run_main)."""
    import shutil  # pylint: disable=import-outside-toplevel
    width = width or max(40, shutil.get_terminal_size().columns)
    module = sys.modules.get(main.__module__)
    doc = (getattr(module, "__doc__", None) or "").strip("\n")
    own = _module_flags(main.__module__, flag_values)
    sections = []
    for title, names in help_sections or [("flags", [f.name for f in own])]:
        names = [n[2:] if n.startswith("--") else n for n in names]
        unknown = [n for n in names if n not in flag_values]
        if unknown:
            raise KeyError(f"help_sections: no flag named {', '.join(unknown)}")
        sections.append((title, [flag_values[n] for n in names]))
    listed = {f for _, section in sections for f in section}
    others = [f for f in own if f not in listed]
    if others:
        sections.append(("other flags", others))
    parts = [doc] if doc else []
    for title, section in sections:
        parts.append("\n".join([f"{title}:"] + [format_flag(f, width) for f in section]))
    parts.append(flags.text_wrap(
        "--flagfile=FILE reads flags from FILE (one per line); --helpfull lists every "
        "flag, absl's included.", width))
    return "\n\n".join(parts) + "\n"


def _resolve_flagfiles(argv):
    """Under `bazel run` a relative --flagfile means the user's directory (or,
    failing that, the repository: configs/ ships in the runfiles)."""
    from mcnn_keras.cli.paths import resolve_user_path  # pylint: disable=import-outside-toplevel
    for i, arg in enumerate(argv):
        if arg.startswith("--flagfile="):
            path = resolve_user_path(arg.split("=", 1)[1])
            if os.path.exists(path):
                argv[i] = f"--flagfile={path}"


def run_main(main, help_sections=None, import_tensorflow=True):
    """`app.run(main)`, with this binary's own --help, a quiet TensorFlow start-up,
    and expected errors turned into `error: ...` and exit 1.

    `--help`, `-h`, `-?` and `--helpshort` print the docstring of main's
    module and its flags, then exit 0, without importing TensorFlow
    (`--helpfull` stays absl's). `help_sections`: an ordered list of
    (title, [flag names]); None = one section with every flag main's module
    defines (flags of that module missing from the sections are listed
    last, under "other flags").

    `import_tensorflow`: import TensorFlow through `quiet_tf` after the flags
    are parsed and before `main` (no CUDA/oneDNN start-up notices on CPU
    machines); False for a binary that never uses TensorFlow (mcnn-launch).

    Logging: the project's diagnostics (logger "mcnn_keras") from INFO; others
    from WARNING, in Python and (TF_CPP_MIN_LOG_LEVEL=1 unless set) C++ alike:
    its INFO lines drown the progress bar. `--verbosity=0` brings them back,
    start-up notices included.

    A process that loaded tensorflow-io (s3://) leaves through `os._exit`
    with its real status: `_exit_if_plugin_loaded`.
    """
    if wants_help(sys.argv):
        sys.stdout.write(help_text(main, help_sections))
        sys.stdout.flush()
        sys.exit(0)

    _resolve_flagfiles(sys.argv)

    def guarded(argv):
        verbose = flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 0
        if not flags.FLAGS["verbosity"].present:
            # The project's diagnostics (logger "mcnn_keras") from INFO,
            # everything else (TensorFlow's INFO lines drown the progress
            # bar) from WARNING.
            logging.set_verbosity(logging.WARNING)
            std_logging.getLogger("mcnn_keras").setLevel(std_logging.INFO)
        if import_tensorflow:
            from mcnn_keras.cli import quiet_tf  # pylint: disable=import-outside-toplevel
            quiet_tf.import_tensorflow(verbose=verbose)
        try:
            status = main(argv)
        except SystemExit as e:
            _exit_if_plugin_loaded(e.code)
            raise
        except Exception as e:  # pylint: disable=broad-except
            if not _is_expected(e):
                if storage.plugin_loaded():
                    traceback.print_exc()
                    _exit_if_plugin_loaded(1)
                raise
            print(f"error: {error_line(e)}", file=sys.stderr, flush=True)
            _exit_if_plugin_loaded(1)
            sys.exit(1)
        _exit_if_plugin_loaded(status)
        return status
    app.run(guarded)


def _exit_if_plugin_loaded(code):
    """Once tensorflow-io is loaded, ends the process with `code` right now.

    tensorflow-io 0.37.1 aborts during interpreter teardown after it has
    talked to S3 ("pure virtual method called", exit status 134), which would
    turn a success into a failure. Every outcome (success, SystemExit, error)
    comes through here with its own status, so skipping the teardown
    (`os._exit`, after flushing logs and stdio) hides no failure.
    """
    if not storage.plugin_loaded():
        return
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"), as Python reports it
        print(code, file=sys.stderr)
        code = 1
    std_logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # pylint: disable=protected-access


def configure_threads(intra_op, inter_op):
    """Sets TensorFlow's thread pools; must run before the first TF op.

    0 keeps what the environment says (TF_NUM_INTRAOP_THREADS /
    TF_NUM_INTEROP_THREADS, which `mcnn-launch` sets per pinned worker).
    """
    from mcnn_keras.train import launcher  # pylint: disable=import-outside-toplevel
    environ = dict(os.environ)
    if intra_op:
        environ["TF_NUM_INTRAOP_THREADS"] = str(intra_op)
    if inter_op:
        environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
    return launcher.configure_threads_from_env(environ)
