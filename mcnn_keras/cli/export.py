r"""mcnn-export: (re)writes <model_dir>/export/ from the run's latest checkpoint.

    mcnn-export --model_dir=runs/demo
    saved_model_cli show --all --dir runs/demo/export

The SavedModel's serving_default takes uint8 `images` [N, H, W, 3] and returns
`probabilities`, `class_ids` and `class_names`. An existing --export_dir is
replaced only if it is an export of this project (it holds mcnn_export.json).
"""


from absl import flags

from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run whose checkpoint to export.")
flags.DEFINE_string("checkpoint", "", "A specific checkpoint prefix instead of the latest.")
flags.DEFINE_string("export_dir", "", "Where to write; default <model_dir>/export.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import export, run_dir  # pylint: disable=import-outside-toplevel
    run = run_dir.RunDir(resolve_user_path(FLAGS.model_dir))
    path = resolve_user_path(FLAGS.export_dir) or run.export
    try:
        export.check_export_dir(path)  # before any work: nothing of the user's moves
    except ValueError as e:
        raise ValueError(f"--export_dir={path}: {e}") from None
    model, cfg, checkpoint = run.restore_model(resolve_user_path(FLAGS.checkpoint) or None)
    export.export_saved_model(model, path, cfg.data.class_name_list())
    print(f"exported {checkpoint} to {path}")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
