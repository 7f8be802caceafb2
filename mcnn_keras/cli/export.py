r"""mcnn-export: (re)writes <model_dir>/export/ from the run's latest checkpoint.

    mcnn-export --model_dir=runs/demo
    mcnn-export --model_dir=runs/demo --format=onnx     # + runs/demo/export/model.onnx
    saved_model_cli show --all --dir runs/demo/export

The SavedModel's `serving_default` takes uint8 `images` [N, H, W, 3] and
returns `probabilities`, `class_ids` and `class_names`; its `features`
signature returns the 512-d `features` too. mcnn_export.json records the input
size, channel order and the training data's normalisation (copied to
preprocessing/ when the run's training shards came from the converter).
--format=onnx also writes model.onnx (needs the `onnx` extra). An existing
--export_dir is replaced only if it is an export of this project (it holds
mcnn_export.json), and only by a complete new one.
"""

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.export.options import ExportOptions, check_options

SECTIONS = config_flags.define_sections({"export": ExportOptions})


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.export import saved_model as export  # pylint: disable=import-outside-toplevel
    from mcnn_keras.export import onnx_export as export_onnx  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import restore, run_dir  # pylint: disable=import-outside-toplevel
    o = check_options(ExportOptions(**config_flags.values(SECTIONS)))
    onnx = o.format == "onnx"
    if onnx:
        try:
            export_onnx.require_onnx()  # before any work
        except ValueError as e:
            raise ValueError(f"--format=onnx: {e}") from None
    run = run_dir.RunDir(resolve_user_path(o.model_dir))
    path = resolve_user_path(o.export_dir) or run.export
    try:
        export.check_export_dir(path)  # before any work: nothing of the user's moves
    except ValueError as e:
        raise ValueError(f"--export_dir={path}: {e}") from None
    model, cfg, checkpoint = restore.restore_model(run, resolve_user_path(o.checkpoint) or None)
    info = export.export_saved_model(model, path, cfg.data.class_name_list(),
                                     train_files=cfg.data.train_files, onnx=onnx)
    normalization = info["normalization"]
    print(f"exported {checkpoint} to {path}" + (f" (+ {export_onnx.ONNX_FILE})" if onnx else ""))
    print(f"normalization: {len(normalization['plates'])} plates from {normalization['source']}"
          if normalization else f"normalization: none ({info['normalization_missing']})")


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
