"""The operator-free Kubernetes recipe: TF_CONFIG from a pod's environment
(`cluster.k8s_indexed_job_tf_config`), the manifest that sets that
environment (deploy/kubernetes/indexed_job.yaml), and mcnn-train's
--tf_config_from wiring."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from mcnn_keras.core import cluster, repo
from mcnn_keras.train import config

REPO_ROOT = repo.REPO_ROOT
MANIFEST = os.path.join(REPO_ROOT, "deploy", "kubernetes", "indexed_job.yaml")

POD = {"JOB_COMPLETION_INDEX": "2", "MCNN_NUM_WORKERS": "4", "MCNN_JOB_NAME": "mcnn-train",
       "MCNN_SERVICE_NAME": "mcnn-workers", "MCNN_PORT": "2222", "HOSTNAME": "mcnn-train-2"}


def test_tf_config_from_a_pod_environment():
    tf_config = json.loads(cluster.k8s_indexed_job_tf_config(POD))
    assert tf_config == {
        "cluster": {"worker": [f"mcnn-train-{i}.mcnn-workers:2222" for i in range(4)]},
        "task": {"type": "worker", "index": 2}}
    task = cluster.parse_tf_config(json.dumps(tf_config))
    assert (task.worker_index, task.num_workers, task.is_chief) == (2, 4, False)
    chief = cluster.parse_tf_config(cluster.k8s_indexed_job_tf_config(
        {**POD, "JOB_COMPLETION_INDEX": "0"}))
    assert chief.is_chief and chief.worker_index == 0
    without_port = {k: v for k, v in POD.items() if k != "MCNN_PORT"}
    assert json.loads(cluster.k8s_indexed_job_tf_config(without_port))["cluster"]["worker"][0] \
        == f"mcnn-train-0.mcnn-workers:{cluster.K8S_DEFAULT_PORT}"


@pytest.mark.parametrize("change, message", [
    ({"JOB_COMPLETION_INDEX": None}, "JOB_COMPLETION_INDEX is not set"),
    ({"MCNN_SERVICE_NAME": ""}, "MCNN_SERVICE_NAME is not set"),
    ({"JOB_COMPLETION_INDEX": "4"}, "out of range for MCNN_NUM_WORKERS=4"),
    ({"MCNN_NUM_WORKERS": "four"}, "must be integers"),
    ({"MCNN_PORT": "tcp://10.0.0.7:2222"}, "is not a port number"),  # a service link
])
def test_bad_pod_environment_is_one_line(change, message):
    environ = {k: v for k, v in {**POD, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        cluster.k8s_indexed_job_tf_config(environ)


def test_tf_config_from_environment_dispatches_and_slurm_takes_mcnn_port():
    assert cluster.tf_config_from_environment("k8s_indexed_job", POD) == \
        cluster.k8s_indexed_job_tf_config(POD)
    slurm = {"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
             "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3"}
    assert json.loads(cluster.tf_config_from_environment("slurm", slurm)) == json.loads(
        cluster.slurm_tf_config(slurm))
    workers = json.loads(cluster.tf_config_from_environment(
        "slurm", {**slurm, "MCNN_PORT": "23456"}))["cluster"]["worker"]
    assert workers == ["n1:23456", "n1:23457", "n2:23456", "n2:23457"]
    with pytest.raises(ValueError, match="unknown TF_CONFIG source"):
        cluster.tf_config_from_environment("k8s", POD)
    field = next(f for _, f in config.fields() if f.name == "tf_config_from")
    assert set(field.metadata["choices"]) == {""} | set(cluster.TF_CONFIG_SOURCES)


def _documents():
    with open(MANIFEST) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    return ({d["kind"]: d for d in documents}["Service"],
            {d["kind"]: d for d in documents}["Job"])


def test_manifest_parses_and_names_the_ports_and_service_of_the_generated_tf_config():
    service, job = _documents()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert service["spec"]["clusterIP"] == "None"  # headless
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == int(env["MCNN_NUM_WORKERS"])
    assert pod["subdomain"] == service["metadata"]["name"] == env["MCNN_SERVICE_NAME"]
    assert env["MCNN_JOB_NAME"] == job["metadata"]["name"]
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert pod["enableServiceLinks"] is False
    port = int(env["MCNN_PORT"])
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    assert [p["containerPort"] for p in container["ports"]] == [port]

    # What pod i would build from exactly this environment.
    for index in range(spec["completions"]):
        tf_config = json.loads(cluster.k8s_indexed_job_tf_config(
            {**env, "JOB_COMPLETION_INDEX": str(index)}))
        hosts = [f"{job['metadata']['name']}-{i}.{service['metadata']['name']}:{port}"
                 for i in range(spec["completions"])]
        assert tf_config["cluster"]["worker"] == hosts
        assert tf_config["task"]["index"] == index

    # The arguments are mcnn-train flags; whole CPUs, requests = limits = threads.
    args = dict(a[2:].split("=", 1) for a in container["args"])
    known = {f.name for _, f in config.fields()}
    assert set(args) <= known, set(args) - known
    assert args["tf_config_from"] == "k8s_indexed_job"
    assert args["strategy"] == "multi_worker_mirrored"
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]
    assert str(resources["limits"]["cpu"]).isdigit()
    assert args["intra_op_threads"] == str(resources["limits"]["cpu"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert args["model_dir"].startswith(tuple(mounts)) or "://" in args["model_dir"]


def _run_train(flags, environ):
    """mcnn-train's main with `flags`, training stubbed: the TF_CONFIG it would use."""
    code = textwrap.dedent(f"""
        import json, os, sys
        from absl import flags
        from mcnn_keras.train import training
        from mcnn_keras.cli import train
        seen = {{}}
        def fake_train(cfg, extra_callbacks=()):
            seen["tf_config"] = os.environ.get("TF_CONFIG")
            return {{}}
        training.train = fake_train
        flags.FLAGS(["mcnn-train"] + {flags!r})
        try:
            train.main(["mcnn-train"])
        except ValueError as e:
            print(json.dumps({{"error": str(e)}}))
            sys.exit(0)
        print(json.dumps(seen))
    """)
    env = {k: v for k, v in os.environ.items() if k not in POD and k != "TF_CONFIG"}
    result = subprocess.run([sys.executable, "-c", code], env={**env, **environ},
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mcnn_train_sets_tf_config_from_the_pod_before_training():
    seen = _run_train(["--strategy=multi_worker_mirrored", "--tf_config_from=k8s_indexed_job"],
                      POD)
    assert json.loads(seen["tf_config"]) == json.loads(cluster.k8s_indexed_job_tf_config(POD))
    assert "JOB_COMPLETION_INDEX is not set" in _run_train(
        ["--strategy=multi_worker_mirrored", "--tf_config_from=k8s_indexed_job"], {})["error"]
    assert "needs --strategy=multi_worker_mirrored" in _run_train(
        ["--tf_config_from=k8s_indexed_job"], POD)["error"]
    assert _run_train([], POD)["tf_config"] is None  # no flag: TF_CONFIG as set (none)
