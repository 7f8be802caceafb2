r"""mcnn-scaling-model: M-CNN images/s and time-to-train on N nodes x W workers, predicted.

Usage:

    mcnn-scaling-model --paper_table1                 # the paper's Table 1 vs the model
    mcnn-scaling-model --paper_table1 --plot=docs/scaling_model.png
    mcnn-scaling-model --paper_table1 --bandwidth_gbps=10 --overlap=0   # what if
    mcnn-scaling-model --paper_dataset_a              # the paper's two Dataset A runs
    mcnn-scaling-model --project                      # this project on the paper's cluster
    mcnn-scaling-model --dataset=A --nodes=1,8,64 --dtype=bfloat16 --dense_gradient=factors
    mcnn-scaling-model --cluster=this_machine --dataset=A --nodes=1 \
        --workers_per_node=2 --local_batch=4 --dense_gradient=allreduce

Prints one JSON line per prediction (`python -m mcnn_keras.cli.scaling_model`
works too). Without a mode flag it predicts this project's trainer (no
overlap, --dense_gradient=auto) for --nodes on --cluster. The model, its
fitted constants and assumptions: mcnn_keras/experiments/scaling_model.py and
docs/SCALING_MODEL.md.
"""

import json
import sys

from mcnn_keras.experiments import scaling_options
from mcnn_keras.experiments import scaling_report
from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path

SECTIONS = config_flags.define_sections({"scaling model": scaling_options.ScalingModelOptions})


def main(argv):
    """Checks the flags (one-line ValueError naming the flag), then prints JSON lines."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    given = config_flags.given(SECTIONS)
    o = scaling_options.check_options(
        scaling_options.ScalingModelOptions(**config_flags.values(SECTIONS)), given)
    plot = None
    if o.plot is not None:  # before the report: a directory there is one line
        from mcnn_keras.io.output_dirs import check_output_file  # pylint: disable=import-outside-toplevel
        plot = check_output_file(resolve_user_path(o.plot), "plot")
    for row in scaling_report.report_rows(o, given):
        print(json.dumps(row), flush=True)
    if plot is not None:
        from mcnn_keras.experiments import scaling_plot  # pylint: disable=import-outside-toplevel
        path = scaling_plot.write_plot(plot, scaling_report.cluster_for(o),
                                       **scaling_report.paper_overrides(o))
        print(f"wrote {path}", file=sys.stderr)


def run():
    common.run_main(main, help_sections=SECTIONS, import_tensorflow=False)


if __name__ == "__main__":
    run()
