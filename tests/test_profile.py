"""Treatment profiles, the BBBC021 literature's 1-NN MoA evaluation (NSC, NSCB), mcnn-profile.

Hand-made tables whose answers are known: plain 1-NN, NSC and NSCB each
pick a different neighbour; exclusion rules on a random table; aggregation;
DMSO normalisation; the binary end to end on a small synthetic table.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli_util import assert_one_line_error, run_binary
from mcnn_keras.io import features_table
from mcnn_keras.profiling import profile, report

X, Y, Z = "Microtubule stabilizers", "Actin disruptors", "Eg5 inhibitors"


def table(fields):
    """(metadata columns, features) from (compound, conc, moa, plate, vector) tuples."""
    metadata = {profile.COMPOUND: [f[0] for f in fields],
                profile.CONCENTRATION: [f[1] for f in fields],
                profile.MOA: [f[2] for f in fields], profile.PLATE: [f[3] for f in fields]}
    return metadata, np.array([f[4] for f in fields], np.float64)


# Query A@1: its most similar treatment is its own compound (A@2); next C (other MoA,
# same week); B (its MoA, another week) only after C; DMSO is identical to A@1.
KNOWN = [("A", "1", X, "Week1_00001", [1, 0, 0]),
         ("A", "2", X, "Week1_00002", [1, 0.05, 0]),
         ("C", "1", Y, "Week1_00001", [0.95, 0.3, 0]),
         ("B", "1", X, "Week2_00001", [0.8, 0, 0.6]),
         ("D", "1", Y, "Week2_00001", [0, 0, 1]),
         ("E", "1", Z, "Week2_00002", [0, 0.2, 1]),  # the only compound of its MoA
         ("DMSO", "0", "DMSO", "Week1_00001", [1, 0, 0]),
         ("DMSO", "0", "DMSO", "Week2_00001", [1, 0, 0])]


def known_treatments():
    metadata, values = table(KNOWN)
    return profile.aggregate(metadata, values, "median", profile.field_batches(metadata))


def neighbour(treatments, results, compound, concentration):
    t = next(i for i in range(len(treatments)) if treatments.compound[i] == compound
             and treatments.concentration[i] == concentration)
    j = results[t]["neighbor"]
    return None if j is None else (treatments.compound[j], treatments.concentration[j])


def test_nn_nsc_and_nscb_pick_the_known_neighbours():
    treatments = known_treatments()
    assert treatments.compound == ["A", "A", "B", "C", "D", "DMSO", "E"]
    nn, nsc, nscb = (profile.match(treatments, p) for p in ("nn", "nsc", "nscb"))
    assert neighbour(treatments, nn, "A", "1") == ("A", "2")      # own compound: right MoA
    assert neighbour(treatments, nsc, "A", "1") == ("C", "1")     # other compound: wrong MoA
    assert neighbour(treatments, nscb, "A", "1") == ("B", "1")    # other week too: right
    a1 = treatments.compound.index("A")
    assert (nn[a1]["correct"], nsc[a1]["correct"], nscb[a1]["correct"]) == (True, False, True)
    assert nsc[a1]["predicted_moa"] == Y
    assert nsc[a1]["similarity"] == pytest.approx(0.95 / np.hypot(0.95, 0.3))
    # E's MoA has no other compound: it gets a neighbour but is not counted.
    e = treatments.compound.index("E")
    assert nsc[e]["neighbor"] is not None and not nsc[e]["evaluated"]
    summary = profile.summarize(treatments, nsc, "nsc")
    assert summary["nsc_skipped"] == 1 and summary["nsc_queries"] == 5
    assert summary["nsc_accuracy"] == summary["nsc_correct"] / 5


def test_dmso_is_never_a_query_nor_a_neighbour():
    treatments = known_treatments()
    dmso = treatments.compound.index("DMSO")
    assert treatments.is_control[dmso] and not treatments.is_query[dmso]
    for protocol in profile.PROTOCOLS:
        results = profile.match(treatments, protocol)
        assert results[dmso]["neighbor"] is None and not results[dmso]["evaluated"]
        assert all(r["neighbor"] != dmso for r in results)


def random_treatments(seed):
    rng = np.random.default_rng(seed)
    fields = []
    for c in range(8):
        moa = ("m0", "m1", "m2")[c % 3]
        for conc in ("0.1", "1", "10"):
            for _ in range(int(rng.integers(1, 4))):  # fields on 1-3 random weeks
                fields.append((f"c{c}", conc, moa, f"Week{rng.integers(1, 5)}_0000{c}",
                               rng.normal(size=6)))
    fields += [("DMSO", "0", "DMSO", f"Week{w}_00009", rng.normal(size=6)) for w in (1, 2)]
    fields += [("u", "1", "", "Week1_00001", rng.normal(size=6))]  # MoA unknown
    metadata, values = table(fields)
    return profile.aggregate(metadata, values, "mean", profile.field_batches(metadata))


@pytest.mark.parametrize("seed", range(5))
def test_exclusion_rules_hold_on_random_tables(seed):
    treatments = random_treatments(seed)
    similarity = profile.cosine_similarity(treatments.profiles)
    assert any(len(b) > 1 for b in treatments.batches)  # treatments spanning weeks
    for protocol in profile.PROTOCOLS:
        for i, r in enumerate(profile.match(treatments, protocol)):
            if not treatments.is_query[i]:  # DMSO and the unknown MoA
                assert r["neighbor"] is None
                continue
            allowed = [j for j in range(len(treatments)) if j != i and treatments.is_query[j]
                       and (protocol == "nn" or treatments.compound[j] != treatments.compound[i])
                       and (protocol != "nscb" or
                            not set(treatments.batches[j]) & set(treatments.batches[i]))]
            if not allowed:
                assert r["neighbor"] is None and not r["evaluated"]
                continue
            j = r["neighbor"]
            assert j in allowed and similarity[i, j] == max(similarity[i, k] for k in allowed)
            assert r["correct"] == (treatments.moa[j] == treatments.moa[i])
            assert r["evaluated"] == any(treatments.moa[k] == treatments.moa[i] for k in allowed)


def test_median_vs_mean_and_moa_of_a_treatment():
    fields = [("A", "1", X, "P1", [0, 1]), ("A", "1", "", "P2", [0, 2]),
              ("A", "1", X, "P1", [9, 6]),
              ("B", "1", "", "P1", [1, 1])]
    metadata, values = table(fields)
    median = profile.aggregate(metadata, values, "median")
    mean = profile.aggregate(metadata, values, "mean")
    np.testing.assert_array_equal(median.profiles[0], [0, 2])
    np.testing.assert_array_equal(mean.profiles[0], [3, 3])
    assert median.moa == [X, ""] and median.num_fields == [3, 1]
    assert median.plates[0] == ("P1", "P2")
    assert not median.is_query[1]  # unknown MoA: neither query nor candidate
    metadata[profile.MOA][1] = Y
    with pytest.raises(ValueError, match=rf"treatment A at 1: .*'{X}' \(row 0\), '{Y}' \(row 1\)"):
        profile.aggregate(metadata, values)


def test_dmso_normalisation_per_plate():
    values = np.array([[1, 5], [3, 5], [8, 5],       # plate P1's DMSO: medians 3, 5
                       [10, 7],                       # P1 treated
                       [0, 0], [2, 4],                # P2's DMSO: medians 1, 2
                       [5, 5]], np.float64)           # P2 treated
    plates = ["P1"] * 4 + ["P2"] * 3
    control = np.array([1, 1, 1, 0, 1, 1, 0], bool)
    centred = profile.normalize(values, plates, control, "dmso_center")
    np.testing.assert_allclose(centred[3], [7, 2])
    np.testing.assert_allclose(centred[6], [4, 3])
    # P1 feature 0: MAD = median(|1-3|, 0, |8-3|) = 2; feature 1 has no spread: centred only.
    robust = profile.normalize(values, plates, control, "dmso_mad_robustize")
    np.testing.assert_allclose(robust[3], [7 / (1.4826 * 2), 2])
    standard = profile.normalize(values, plates, control, "dmso_standardize")
    np.testing.assert_allclose(standard[6], [(5 - 1) / 1, (5 - 2) / 2])
    np.testing.assert_array_equal(profile.normalize(values, plates, control, "none"), values)
    with pytest.raises(ValueError, match="plate 'P3' has no DMSO fields"):
        profile.normalize(values, plates[:-1] + ["P3"], control, "dmso_center")


def test_batch_rules():
    metadata = {profile.PLATE: ["Week10_40111", "plate7", ""], "Metadata_Run": ["r1", "r2", "r3"]}
    assert profile.field_batches(metadata) == ["Week10", "plate7", ""]
    assert profile.field_batches(metadata, "plate") == ["Week10_40111", "plate7", ""]
    assert profile.field_batches(metadata, "Metadata_Run") == ["r1", "r2", "r3"]
    with pytest.raises(ValueError, match="--batch=week: use plate_prefix, plate or"):
        profile.field_batches(metadata, "week")
    with pytest.raises(ValueError, match="x.parquet: no column Metadata_Batch"):
        profile.field_batches(metadata, "Metadata_Batch", "x.parquet")


def test_nscb_is_null_with_a_reason_when_every_treatment_shares_a_batch():
    fields = [(f, "1", moa, "Week1_00001", np.eye(3)[k])
              for k, (f, moa) in enumerate([("A", X), ("B", X), ("C", Y)])]
    result = profile.evaluate(table(fields))
    summary = result["summary"]
    assert summary["nsc_accuracy"] is not None and summary["nscb_accuracy"] is None
    assert "no query has a treatment of its MoA from another compound and from none of its " \
           "batches (--batch=plate_prefix: 1 batches)" == summary["nscb_reason"]
    # Unknown plates: no batch, so no part in NSCB.
    fields = [(f[0], f[1], f[2], "", f[4]) for f in KNOWN]
    assert profile.evaluate(table(fields))["summary"]["nscb_queries"] == 0


def test_evaluate_on_the_known_table():
    result = profile.evaluate(table(KNOWN))
    s = result["summary"]
    # NSC: A@1 -> C (wrong), A@2 -> C (wrong), B -> A@1 (right), C -> A@2 (wrong),
    # D -> E (wrong); E skipped (no other compound of its MoA).
    assert (s["nsc_correct"], s["nsc_queries"], s["nsc_skipped"]) == (1, 5, 1)
    assert s["nsc_accuracy"] == pytest.approx(0.2)
    # NSCB (B, D, E in week 2, the others in week 1): A@1 -> B, A@2 -> B, B -> A@1
    # (right), C -> B (wrong), D -> A@1 (all week-1 candidates orthogonal: the first
    # wins; wrong); E skipped.
    assert (s["nscb_correct"], s["nscb_queries"], s["nscb_skipped"]) == (3, 5, 1)
    treatments, nscb = result["treatments"], result["nscb"]
    assert [neighbour(treatments, nscb, c, "1") for c in "ABCD"] == \
        [("B", "1"), ("A", "1"), ("B", "1"), ("A", "1")]
    assert (s["num_treatments"], s["num_queries"], s["num_compounds"]) == (7, 6, 5)
    assert (s["num_control_treatments"], s["num_batches"]) == (1, 2)
    labels, matrix = result["confusion"]["nsc"]
    assert labels == [Y, Z, X]  # MOA_CLASSES order; Z has no evaluated query but is a label
    assert matrix.sum() == 5 and np.trace(matrix) == 1


# ---- mcnn-profile, the binary -------------------------------------------------------------

def synthetic_fields(weeks=3):
    """Treatments of 12 MoAs x 2 compounds x 2 doses on 3 weeks, MoA-specific features."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(12, 16))
    rows, values = [], []
    for m in range(12):
        for c in range(2):
            plate = f"Week{(m + c) % weeks + 1}_{m:05d}"
            for dose in ("0.3", "3.0"):
                for site in range(3):
                    rows.append({"plate": plate, "well": f"C{m:02d}", "site": site,
                                 "compound": f"cpd{m}-{c}", "concentration": dose,
                                 "class_name": f"moa{m:02d}", "source": f"{m}-{c}-{site}.tif"})
                    values.append(centres[m] + 0.2 * rng.normal(size=16))
            rows.append({"plate": plate, "compound": "DMSO", "concentration": "0",
                         "class_name": "DMSO"})
            values.append(0.2 * rng.normal(size=16))
    return rows, np.array(values, np.float32)


def test_binary_end_to_end(tmp_path):
    features = tmp_path / "fields.parquet"
    rows, values = synthetic_fields()
    features_table.write_features(features, rows, values, extra={"saved_model": "x"})
    out = tmp_path / "profile"
    result = run_binary("mcnn_keras.cli.profile", f"--features={features}",
                        f"--output_dir={out}", "--normalize=dmso_center", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert summary["nsc_accuracy"] == 1.0 and summary["nscb_accuracy"] == 1.0
    assert (summary["num_treatments"], summary["num_queries"], summary["num_compounds"]) == \
        (49, 48, 24)
    assert summary["nscb_reason"] is None and summary["normalize"] == "dmso_center"
    assert sorted(os.listdir(out)) == ["confusion_nsc.png", "confusion_nscb.png",
                                       "embedding.png", "metrics.json", "profiles.parquet",
                                       "treatments.csv"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nsc_accuracy"] == 1.0 and len(metrics["confusion"]["nsc"]["labels"]) == 12
    with open(out / "treatments.csv") as f:
        table_rows = list(csv.DictReader(f))
    assert len(table_rows) == 49
    for row in table_rows:
        if row["role"] == "query":
            assert row["nsc_neighbor_compound"] != row["compound"]
            assert row["nsc_neighbor_moa"] == row["moa"] and row["nscb_correct"] == "true"
            assert not set(row["batches"].split("|")) & set(
                next(r for r in table_rows if r["compound"] == row["nscb_neighbor_compound"])
                ["batches"].split("|"))
        else:
            assert row["compound"] == "DMSO" and row["nsc_neighbor_compound"] == ""
    profiles = features_table.read_table(out / "profiles.parquet")
    assert profiles.features.shape == (49, 16)
    assert profiles.feature_names == features_table.default_feature_names(16)
    assert profiles.metadata["Metadata_Compound"] == [r["compound"] for r in table_rows]
    assert profiles.extra["profile"]["normalize"] == "dmso_center"
    assert profiles.extra["source_extra"] == {"saved_model": "x"}
    for png in ("embedding.png", "confusion_nsc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_binary_bad_input_gives_one_line(tmp_path):
    no_compound = tmp_path / "no_compound.parquet"
    pq.write_table(pa.table({"Metadata_MoA": ["x"], "Metadata_Concentration": ["1"],
                             "f": [1.0]}), no_compound)
    assert_one_line_error(
        run_binary("mcnn_keras.cli.profile", f"--features={no_compound}",
                   f"--output_dir={tmp_path / 'out'}"),
        "no_compound.parquet: no column Metadata_Compound")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    assert_one_line_error(
        run_binary("mcnn_keras.cli.profile", f"--features={garbage}",
                   f"--output_dir={tmp_path / 'out'}"), "garbage.parquet: not a readable Parquet")
    rows, values = synthetic_fields()
    rows = [r for r in rows if not (r["compound"] == "DMSO" and r["plate"].startswith("Week1_"))]
    partial = features_table.write_features(tmp_path / "partial.parquet", rows,
                                            values[:len(rows)])
    assert_one_line_error(
        run_binary("mcnn_keras.cli.profile", f"--features={partial}",
                   f"--output_dir={tmp_path / 'out'}", "--normalize=dmso_mad_robustize"),
        "has no DMSO fields", "--normalize=dmso_mad_robustize")
    assert_one_line_error(
        run_binary("mcnn_keras.cli.profile", f"--features={partial}",
                   f"--output_dir={tmp_path / 'out'}", "--batch=week"), "--batch=week")
    assert_one_line_error(run_binary("mcnn_keras.cli.profile", f"--features={partial}"),
                          "--output_dir")


def test_help_lists_flags_without_tensorflow():
    # In a subprocess: the binary's flags would clash with other binaries' in this one.
    script = ("import sys; sys.argv = ['prog', '--help']\n"
              "from mcnn_keras.cli import profile\n"
              "assert 'numpy' not in sys.modules\n"
              "try:\n    profile.run()\nexcept SystemExit as e:\n    assert e.code in (0, None)\n"
              "print('imported:', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules),"
              " file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mcnn-profile: ")
    for flag in ("features", "output_dir", "aggregate", "normalize", "batch", "control"):
        assert f"--{flag}: " in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "imported: []"


@pytest.mark.parametrize("fields", [[], [("DMSO", "0", "DMSO", "P1", [1, 0]),
                                         ("x", "1", "", "P1", [0, 1])]])
def test_nothing_to_query_gives_nulls_with_reasons(tmp_path, fields):
    metadata, values = table(fields)
    result = profile.evaluate((metadata, values.reshape(len(fields), 2)),
                              normalization="dmso_center" if fields else "none")
    report.write_report(result, str(tmp_path))
    s = result["summary"]
    assert s["nsc_accuracy"] is None and s["nscb_accuracy"] is None
    assert s["nsc_reason"] == s["nscb_reason"] == "no treatment with a known MoA other than DMSO"
    assert s["num_treatments"] == len(fields) and s["num_queries"] == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["nsc_accuracy"] is None
    assert len(features_table.read_table(tmp_path / "profiles.parquet").features) == len(fields)


@pytest.mark.slow
def test_profiles_of_a_trained_model_find_the_moa_well_above_chance(testdata_dir, tmp_path):
    # The check, with the real binaries: a short demo-recipe run on
    # the bundled synthetic set (13 classes, 2-4 compounds each), its export's
    # features of the validation fields, then NSC 1-NN over the treatments.
    run, features = tmp_path / "run", tmp_path / "fields.parquet"
    data = f"{testdata_dir}/synthetic"
    trained = run_binary("mcnn_keras.cli.train", f"--train_files={data}/train-*.tfrecord",
                         f"--val_files={data}/val-*.tfrecord", f"--model_dir={run}",
                         "--epochs=12", "--batch_size=8", "--base_lr=0.02",
                         "--warmup_start_lr=0.002", "--warmup_epochs=2", "--end_lr=0.0002",
                         "--augment", "--verbose=2", "--notensorboard", timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    predicted = run_binary("mcnn_keras.cli.predict", f"--saved_model={run}/export",
                           f"--inputs={data}/val-*.tfrecord",
                           f"--output_csv={tmp_path}/p.csv", f"--features_out={features}",
                           "--noprogress", timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    result = profile.evaluate(str(features))
    summary = result["summary"]
    chance = 1 / 12  # 12 MoAs besides DMSO
    assert summary["nsc_queries"] >= 40, summary
    assert summary["nsc_accuracy"] > 4 * chance, summary


def test_a_rerun_removes_what_a_killed_one_left_and_nothing_else(tmp_path):
    from mcnn_keras.io import atomic  # pylint: disable=import-outside-toplevel
    leftovers = [atomic.temporary_path(tmp_path / n)
                 for n in ("profiles.parquet", "metrics.json", "confusion_nsc.png")]
    users = ["notes.txt", ".notes.txt.tmp-x.txt"]
    mine = atomic.temporary_path(tmp_path / "mine.csv")  # not an output of mcnn-profile
    for path in leftovers + [mine] + [str(tmp_path / n) for n in users]:
        open(path, "w").close()
    metadata, values = table([("DMSO", "0", "DMSO", "P1", [1, 0]), ("x", "1", "", "P1", [0, 1])])
    report.write_report(profile.evaluate((metadata, values.reshape(2, 2))), str(tmp_path))
    left = [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert sorted(left) == sorted([".notes.txt.tmp-x.txt", os.path.basename(mine)])
    assert all((tmp_path / n).exists() for n in users)
