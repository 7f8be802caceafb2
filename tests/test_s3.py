"""s3:// against a real S3 server: moto on 127.0.0.1, tensorflow-io, real binaries.

Needs the TensorFlow 2.16 leg (`tools/test_compat.sh`: tensorflow-io 0.37.1,
moto[server], boto3); elsewhere skipped, unless MCNN_REQUIRE_S3=1 (set by
that script), which turns the skip into a failure. Everything that touches S3
through tensorflow-io runs in a subprocess: tensorflow-io 0.37.1 aborts at
interpreter exit after talking to S3, and the binaries must still exit 0.

    MCNN_REQUIRE_S3=1 .venv-tf216/bin/python -m pytest tests/test_s3.py
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mcnn_keras.core.cluster import free_ports
from data_util import bars_split_dir

_MISSING = [m for m in ("tensorflow_io", "boto3", "moto") if importlib.util.find_spec(m) is None]
_WHY = (f"needs {', '.join(_MISSING)} (the TensorFlow 2.16 leg: ./tools/test_compat.sh; "
        f"pip install '.[s3,s3test]')")
# Each test is collected, then skipped (a file of nothing but skips is no "no
# tests collected" failure under Bazel) or, with MCNN_REQUIRE_S3=1, failed.
_REQUIRED = os.environ.get("MCNN_REQUIRE_S3") == "1"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(_MISSING) and not _REQUIRED, reason=_WHY)]

BUCKET = "mcnn-test"


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """A moto S3 server on a free loopback port; yields the environment to reach it."""
    if _MISSING:
        pytest.fail(f"MCNN_REQUIRE_S3=1 but the S3 test cannot run: {_WHY}", pytrace=False)
    import boto3  # pylint: disable=import-outside-toplevel
    port = free_ports(1)[0]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               S3_ENDPOINT=f"http://127.0.0.1:{port}", NO_PROXY="127.0.0.1",
               no_proxy="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_buckets()
            break
        except Exception:  # pylint: disable=broad-except
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.2)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield env, client
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def keys(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def upload_dir(client, directory, prefix):
    for name in sorted(os.listdir(directory)):
        client.upload_file(os.path.join(directory, name), BUCKET, f"{prefix}/{name}")


def python(env, code, timeout=120):
    """Runs `code` in a fresh interpreter (tensorflow-io loaded there, not here)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_glob_lists_objects_and_atomic_file_publishes_only_the_whole_object(s3_env, tmp_path):
    env, client = s3_env
    for name in ("g/train-0.tfrecord", "g/train-1.tfrecord", "g/val-0.tfrecord",
                 "g/sub/train-9.tfrecord", "g/.train-2.tfrecord.tmp-" + "a" * 32 + ".tfrecord"):
        client.put_object(Bucket=BUCKET, Key=name, Body=b"x")
    for i in range(150):  # more than one listing page (tensorflow-io asks for 100 keys)
        client.put_object(Bucket=BUCKET, Key=f"g/many/shard-{i:03d}.tfrecord", Body=b"x")
    result = python(env, f"""
        import json, os, boto3
        from mcnn_keras.io import atomic
        from mcnn_keras.data import dataset
        from mcnn_keras.io import storage
        storage.require_filesystem("s3://{BUCKET}/g")
        out = {{"glob": dataset.list_files("s3://{BUCKET}/g/train-*.tfrecord", check=False),
                "many": dataset.list_files("s3://{BUCKET}/g/many/*-1*", check=False)}}
        client = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
        listed = lambda: sorted(o["Key"] for o in client.list_objects_v2(
            Bucket="{BUCKET}", Prefix="a/").get("Contents", []))
        atomic.write_text_atomic("s3://{BUCKET}/a/blob.bin", "old")
        with atomic.atomic_file("s3://{BUCKET}/a/blob.bin") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"0123456789" * 100000)
            out["during"] = listed()
            out["during_body"] = client.get_object(Bucket="{BUCKET}", Key="a/blob.bin")[
                "Body"].read().decode()
        with atomic.atomic_file("s3://{BUCKET}/a/new.bin") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"new")
            out["during_new"] = listed()
        out["after"] = listed()
        try:
            with atomic.atomic_file("s3://{BUCKET}/a/failed.bin") as tmp:
                open(tmp, "wb").close()
                raise RuntimeError("writer failed")
        except RuntimeError:
            pass
        out["after_failure"] = listed()
        out["left_locally"] = [n for n in os.listdir(os.path.dirname(tmp)) if "failed.bin" in n]
        print(json.dumps(out), flush=True)
        os._exit(0)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["glob"] == [f"s3://{BUCKET}/g/train-0.tfrecord", f"s3://{BUCKET}/g/train-1.tfrecord"]
    assert out["many"] == [f"s3://{BUCKET}/g/many/shard-{i:03d}.tfrecord" for i in range(100, 150)]
    assert out["during"] == ["a/blob.bin"] and out["during_body"] == "old"  # until the end
    assert out["during_new"] == ["a/blob.bin"]  # a new object: nothing until the end
    assert out["after"] == out["after_failure"] == ["a/blob.bin", "a/new.bin"]
    assert out["left_locally"] == []
    body = client.get_object(Bucket=BUCKET, Key="a/blob.bin")["Body"].read()
    assert body == b"0123456789" * 100000


def test_an_error_after_touching_s3_keeps_exit_status_1(s3_env):
    env, _ = s3_env
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.train",
         f"--train_files=s3://{BUCKET}/nothing/train-*.tfrecord", "--model_dir=/nonexistent/x"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: no files match" in result.stderr
    assert "pure virtual method called" not in result.stderr


def test_synthetic_shards_are_written_to_the_bucket(s3_env, tmp_path):
    env, client = s3_env
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.synthetic", f"--output_dir=s3://{BUCKET}/synth",
         "--height=128", "--width=128", "--num_train=6", "--num_val=3", "--num_shards=2",
         ], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert keys(client, "synth/") == [
        "synth/manifest.json", "synth/train-00000-of-00002.tfrecord", "synth/train-00001-of-00002.tfrecord",
        "synth/val-00000-of-00001.tfrecord"]
    assert os.listdir(tmp_path) == []  # no local "s3:" folder


def _train_command(model_dir, epochs):
    return [sys.executable, "-m", "mcnn_keras.cli.train",
            f"--train_files=s3://{BUCKET}/data/train-*.tfrecord",
            f"--val_files=s3://{BUCKET}/data/val-*.tfrecord", f"--model_dir={model_dir}",
            "--height=128", "--width=128", "--batch_size=8", f"--epochs={epochs}",
            "--base_lr=0.02", "--warmup_epochs=0.5", "--seed=3", "--verbose=2",
            "--checkpoint_every_steps=2"]


def test_train_killed_resumes_from_the_bucket_then_evaluate_and_export_load(s3_env, tmp_path):
    env, client = s3_env
    upload_dir(client, bars_split_dir(tmp_path / "data", 48, 26, train_shards=4), "data")
    model_dir, epochs, steps_per_epoch = f"s3://{BUCKET}/runs/x", 3, 48 // 8
    command = _train_command(model_dir, epochs)

    # 1. Train, and SIGKILL it once the first checkpoint is in the bucket.
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while ("runs/x/checkpoints/checkpoint" not in keys(client, "runs/x/checkpoints/")
           and first.poll() is None and time.monotonic() < deadline):
        time.sleep(0.1)
    first.kill()
    output, _ = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, output[-3000:]  # killed mid-run
    assert not keys(client, "runs/x/export/"), "the first run finished before the kill"

    # 2. The same command resumes from the checkpoint in the bucket and exits 0.
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "pure virtual method called" not in resumed.stderr
    assert "resumed from step " in resumed.stderr, resumed.stderr[-3000:]
    step = int(resumed.stderr.split("resumed from step ")[1].split()[0])
    assert 0 < step < epochs * steps_per_epoch
    state = client.get_object(Bucket=BUCKET, Key="runs/x/checkpoints/checkpoint")["Body"].read()
    assert f"ckpt-{epochs * steps_per_epoch}\"".encode() in state
    metrics = client.get_object(Bucket=BUCKET, Key="runs/x/metrics.jsonl")["Body"].read()
    assert [json.loads(line)["epoch"] for line in metrics.splitlines()] == [1, 2, 3]
    outputs = keys(client, "runs/x/")
    for name in ("flags.json", "summary.json", "training_curves.png",
                 "export/saved_model.pb"):
        assert f"runs/x/{name}" in outputs, (name, outputs)
    assert not [k for k in outputs if ".tmp-" in k], outputs

    # 3. Evaluate the run in the bucket; the reports land next to it.
    evaluated = subprocess.run([sys.executable, "-m", "mcnn_keras.cli.evaluate",
                                f"--model_dir={model_dir}"], env=env, capture_output=True,
                               text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.JSONDecoder().raw_decode(evaluated.stdout)[0]["images"] == 26
    assert "runs/x/eval/metrics.json" in keys(client, "runs/x/eval/")

    # 4. The export in the bucket loads (downloaded, then tf.saved_model.load).
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    local = tmp_path / "export"
    for key in keys(client, "runs/x/export/"):
        if not key.endswith("/"):
            target = local / key[len("runs/x/export/"):]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, key, str(target))
    serve = tf.saved_model.load(str(local)).signatures["serving_default"]
    result = serve(images=tf.constant(np.zeros((2, 128, 128, 3), np.uint8)))
    assert result["probabilities"].shape == (2, 13)
    np.testing.assert_allclose(result["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-4)

    # 5. mcnn-predict reads the export and the shards from the bucket and writes there.
    predicted = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.predict", f"--saved_model={model_dir}/export",
         f"--inputs=s3://{BUCKET}/data/val-*.tfrecord",
         f"--output_csv=s3://{BUCKET}/predicted/p.csv",
         f"--features_out=s3://{BUCKET}/predicted/f.parquet", "--noprogress"],
        env=env, capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout.strip().splitlines()[-1])["fields"] == 26
    assert keys(client, "predicted/") == ["predicted/f.parquet", "predicted/p.csv"]
    rows = client.get_object(Bucket=BUCKET, Key="predicted/p.csv")["Body"].read().decode()
    assert len(rows.strip().splitlines()) == 1 + 26


def test_converter_stages_locally_and_uploads_manifest_last(s3_env, tmp_path):
    from mcnn_keras.data.bbbc021 import fixture  # pylint: disable=import-outside-toplevel
    env, client = s3_env
    fixture.write_fixture(str(tmp_path / "bbbc021"), 128, 128, plates=2, sites=1,
                          progress=False)
    staging = tmp_path / "staging"
    command = [sys.executable, "-m", "mcnn_keras.cli.convert_bbbc021",
               f"--bbbc021_dir={tmp_path / 'bbbc021'}", f"--output_dir=s3://{BUCKET}/conv",
               "--height=128", "--width=128", "--num_shards=2", "--noprogress",
               f"--staging_dir={staging}"]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    uploaded = keys(client, "conv/")
    for name in ("manifest.json", "normalization.json", "illumination.npz",
                 "train-00000-of-00002.tfrecord", "val-00000-of-00001.tfrecord"):
        assert f"conv/{name}" in uploaded, (name, uploaded)
    assert not staging.exists()  # deleted after the upload
    assert sorted(os.listdir(tmp_path)) == ["bbbc021"]  # no local "s3:" folder
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key="conv/manifest.json")["Body"]
                          .read())
    assert manifest["flags"]["output_dir"] == f"s3://{BUCKET}/conv"
    # Again: converted afresh in a new staging directory, byte for byte the same:
    # nothing is uploaded twice.
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "uploaded 0 files" in again.stderr, again.stderr[-3000:]
