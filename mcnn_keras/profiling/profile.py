"""Morphological profiles: fields -> treatment profiles -> mechanism of action by 1-NN.

The BBBC021 literature's evaluation of features (Ljosa et al. 2013 and the
deep-learning papers after it), TensorFlow-free:

1. optional normalisation of each field against the DMSO fields of its plate
   (`NORMALIZATIONS`; pycytominer's `normalize(..., samples="<control>",
   method=...)` run per plate: `dmso_standardize` is its "standardize",
   `dmso_mad_robustize` its "mad_robustize", `dmso_center` subtracts the
   median only). A feature with no spread among a plate's controls (a ReLU
   unit that is 0 on every DMSO field) is centred, not scaled (pycytominer
   divides by its epsilon, 1e-18, which blows such a feature up);
2. a treatment profile per (compound, concentration): the median (default)
   or mean of its fields' features; its MoA is its fields' label ("" = not
   known; two different labels are an error);
3. 1-nearest-neighbour by cosine similarity over treatment profiles.
   Queries: every treatment with a known MoA, except the control (DMSO);
   candidates: the same set (Ljosa 2013 leaves DMSO out entirely).
   **NSC** (not-same-compound): a query's candidates exclude every treatment
   of its compound. **NSCB** (not-same-compound-or-batch): they also exclude
   every treatment that shares ANY batch with the query: a treatment here is
   aggregated over all its fields, so it may span several batches (its
   replicates' plates), and a candidate is "of another batch" only if none
   of its fields was imaged in a batch the query's fields were. (The
   alternative, one profile per treatment x batch, is what the batch-effect
   papers' code does; on BBBC021 a treatment's replicate plates are of one
   week, so both agree there.) Treatments with a field of unknown batch take
   no part in NSCB.
   A query counts only if some candidate shares its MoA (as in the
   literature's code: a class whose compounds all sit in one batch cannot
   be matched under NSCB, e.g. BBBC021's cholesterol-lowering and kinase
   inhibitors); skipped queries are counted. Ties go to the first candidate
   in (compound, concentration) order.

Batches (`batch=`): "plate_prefix" (default) is the part of Metadata_Plate
before the first "_": BBBC021's plates are `Week<N>_<id>` and its batch is the
week; a plate name without "_" is its own batch. "plate": each plate is a
batch. Any other value names a `Metadata_*` column holding the batch.

Usage:

    result = evaluate("fields.parquet", aggregate_method="median",
                      normalization="dmso_center")
    report.write_report(result, "out/profile")   # profiling/report.py: files and PNGs
    result["summary"]["nsc_accuracy"], result["summary"]["nscb_accuracy"]
    treatments = aggregate(metadata, features, "median", batches)
    nsc = match(treatments, "nsc")                # per treatment: neighbour, correct, ...
"""

import dataclasses
import logging

import numpy as np

from mcnn_keras.data import classes
from mcnn_keras.profiling.options import AGGREGATES, DEFAULT_BATCH, NORMALIZATIONS

_LOG = logging.getLogger(__name__)

CONTROL = classes.DMSO
PROTOCOLS = ("nn", "nsc", "nscb")  # nn: plain 1-NN (any other treatment), for comparison
COMPOUND, CONCENTRATION, MOA, PLATE = ("Metadata_Compound", "Metadata_Concentration",
                                      "Metadata_MoA", "Metadata_Plate")
_MAD_TO_SIGMA = 1.4826  # scipy's median_abs_deviation(scale="normal"), as pycytominer


@dataclasses.dataclass
class Treatments:
    """Treatment profiles, sorted by (compound, concentration)."""
    compound: list
    concentration: list
    moa: list                 # "" = not known
    profiles: np.ndarray      # (T, D) float64
    num_fields: list
    plates: list              # sorted tuple of plate names per treatment
    batches: list             # sorted tuple of batches per treatment ("" = unknown)
    is_control: np.ndarray    # (T,) bool

    def __len__(self):
        return len(self.compound)

    @property
    def is_query(self):
        """Treatments that are queries and candidates: known MoA, not the control."""
        return np.array([m != "" for m in self.moa], bool) & ~self.is_control


def batch_of_plate(plate):
    """BBBC021's batch of a plate: `Week1_22123` -> `Week1` (no "_": the plate itself)."""
    return plate.split("_", 1)[0]


def field_batches(metadata, rule=DEFAULT_BATCH, source="features"):
    """Each field's batch under `rule` (see the module docstring); "" = unknown."""
    if rule in ("plate_prefix", "plate"):
        _require(metadata, PLATE, source, f"for --batch={rule}")
        plates = metadata[PLATE]
        return [batch_of_plate(p) for p in plates] if rule == "plate_prefix" else list(plates)
    if not rule.startswith("Metadata_"):
        raise ValueError(f"--batch={rule}: use plate_prefix, plate or a Metadata_* column")
    _require(metadata, rule, source, "given by --batch")
    return list(metadata[rule])


def _require(metadata, column, source, why):
    if column not in metadata:
        raise ValueError(f"{source}: no column {column} ({why})")


def _concentration_key(text):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def normalize(features, plates, is_control, method="none", source="features"):
    """Each field normalised against its plate's control fields (module docstring).

    features (N, D); plates: N plate names; is_control: (N,) bool. Returns
    float64 (N, D). A plate without control fields is an error (naming it).
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"--normalize={method}: use one of {', '.join(NORMALIZATIONS)}")
    features = np.asarray(features, np.float64)
    if method == "none":
        return features
    plates = np.asarray(plates, dtype=object)
    is_control = np.asarray(is_control, bool)
    out = np.empty_like(features)
    for plate in sorted(set(plates.tolist())):
        rows = plates == plate
        controls = features[rows & is_control]
        if not len(controls):
            raise ValueError(f"{source}: plate {plate!r} has no {CONTROL} fields to normalise "
                             f"against (--normalize={method}); use --normalize=none")
        if method == "dmso_standardize":
            center, scale = controls.mean(axis=0), controls.std(axis=0)
        else:
            center = np.median(controls, axis=0)
            scale = (_MAD_TO_SIGMA * np.median(np.abs(controls - center), axis=0)
                     if method == "dmso_mad_robustize" else np.ones_like(center))
        scale = np.where(scale > 0, scale, 1.0)  # no spread among controls: centre only
        out[rows] = (features[rows] - center) / scale
    return out


def aggregate(metadata, features, method="median", batches=None, control=CONTROL,
              source="features"):
    """Treatment profiles: `method` of the fields of each (compound, concentration).

    metadata: {column: [str]} with Metadata_Compound, Metadata_Concentration,
    Metadata_MoA (and Metadata_Plate, else plates are ""); batches: the
    fields' batches (None: unknown). A treatment is the control if its
    compound or its MoA is `control`.
    """
    if method not in AGGREGATES:
        raise ValueError(f"--aggregate={method}: use one of {', '.join(AGGREGATES)}")
    for column in (COMPOUND, CONCENTRATION, MOA):
        _require(metadata, column, source, "to group fields into treatments")
    features = np.asarray(features, np.float64)
    n = len(features)
    compounds, concentrations, moas = metadata[COMPOUND], metadata[CONCENTRATION], metadata[MOA]
    plates = metadata.get(PLATE, [""] * n)
    batches = [""] * n if batches is None else batches
    groups = {}
    for i in range(n):
        groups.setdefault((compounds[i], concentrations[i]), []).append(i)
    order = sorted(groups, key=lambda k: (k[0], _concentration_key(k[1])))
    reduce = np.median if method == "median" else np.mean
    moa_list, profiles = [], np.empty((len(order), features.shape[1]))
    for t, key in enumerate(order):
        rows = groups[key]
        labels = {}
        for i in rows:
            if moas[i]:
                labels.setdefault(moas[i], i)
        if len(labels) > 1:
            found = ", ".join(f"{m!r} (row {i})" for m, i in labels.items())
            raise ValueError(f"{source}: treatment {key[0]} at {key[1]}: its fields disagree on "
                             f"{MOA}: {found}")
        moa_list.append(next(iter(labels), ""))
        profiles[t] = reduce(features[rows], axis=0)
    return Treatments(
        compound=[k[0] for k in order], concentration=[k[1] for k in order], moa=moa_list,
        profiles=profiles, num_fields=[len(groups[k]) for k in order],
        plates=[tuple(sorted({plates[i] for i in groups[k]})) for k in order],
        batches=[tuple(sorted({batches[i] for i in groups[k]})) for k in order],
        is_control=np.array([k[0] == control or m == control
                             for k, m in zip(order, moa_list)], bool))


def cosine_similarity(profiles):
    """(T, T) cosine similarities; a zero profile is similar to nothing (0)."""
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    unit = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
    return unit @ unit.T


def candidates(treatments, protocol):
    """(T, T) bool: may treatment j answer query i under `protocol`?"""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: use one of {PROTOCOLS}")
    query = treatments.is_query
    allowed = query[None, :] & query[:, None] & ~np.eye(len(treatments), dtype=bool)
    if protocol in ("nsc", "nscb"):
        compound = np.asarray(treatments.compound, dtype=object)
        allowed &= compound[:, None] != compound[None, :]
    if protocol == "nscb":
        names = sorted({b for bs in treatments.batches for b in bs})
        index = {b: k for k, b in enumerate(names)}
        member = np.zeros((len(treatments), len(names)), bool)
        for t, bs in enumerate(treatments.batches):
            member[t, [index[b] for b in bs]] = True
        known = np.array([bool(bs) and "" not in bs for bs in treatments.batches], bool)
        shares = (member.astype(np.int64) @ member.T.astype(np.int64)) > 0
        allowed &= ~shares & known[:, None] & known[None, :]
    return allowed


def match(treatments, protocol="nsc", similarity=None):
    """1-NN MoA of every query under `protocol`: a list with one dict per treatment.

    Each: neighbor (index or None), similarity, predicted_moa, correct and
    evaluated (counted in the accuracy: some candidate shares its MoA); None
    values for treatments that are not queries (control, unknown MoA).
    """
    similarity = cosine_similarity(treatments.profiles) if similarity is None else similarity
    allowed = candidates(treatments, protocol)
    moa = np.asarray(treatments.moa, dtype=object)
    results = []
    for i, is_query in enumerate(treatments.is_query):
        entry = {"neighbor": None, "similarity": None, "predicted_moa": None,
                 "correct": None, "evaluated": False}
        pool = np.flatnonzero(allowed[i])
        if is_query and len(pool):
            j = int(pool[np.argmax(similarity[i, pool])])  # first maximum: lowest index
            entry.update(neighbor=j, similarity=float(similarity[i, j]),
                         predicted_moa=moa[j], correct=bool(moa[j] == moa[i]),
                         evaluated=bool((moa[pool] == moa[i]).any()))
        results.append(entry)
    return results


def moa_order(names):
    """MoA names in classes.MOA_CLASSES order, others after them, sorted."""
    known = [m for m in classes.MOA_CLASSES if m in names]
    return known + sorted(set(names) - set(known))


def confusion(treatments, results):
    """(labels, matrix): rows true MoA, columns the neighbour's, over evaluated queries."""
    labels = moa_order({m for m, q in zip(treatments.moa, treatments.is_query) if q})
    index = {m: k for k, m in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), np.int64)
    for t, r in enumerate(results):
        if r["evaluated"]:
            matrix[index[treatments.moa[t]], index[r["predicted_moa"]]] += 1
    return labels, matrix


_NO_EVALUATED = {
    "nn": "no query has another treatment of its MoA",
    "nsc": "no query has a treatment of its MoA from another compound",
    "nscb": ("no query has a treatment of its MoA from another compound and from none of "
             "its batches (--batch={batch}: {num_batches} batches)"),
}


def summarize(treatments, results, protocol, batch=DEFAULT_BATCH):
    """accuracy (None + reason when nothing is evaluated), evaluated, correct, skipped."""
    queries = int(treatments.is_query.sum())
    evaluated = sum(r["evaluated"] for r in results)
    correct = sum(bool(r["evaluated"] and r["correct"]) for r in results)
    reason = None
    if not queries:
        reason = f"no treatment with a known MoA other than {CONTROL}"
    elif not evaluated:
        num_batches = len({b for bs in treatments.batches for b in bs if b})
        reason = _NO_EVALUATED[protocol].format(batch=batch, num_batches=num_batches)
    return {f"{protocol}_accuracy": correct / evaluated if evaluated else None,
            f"{protocol}_reason": reason, f"{protocol}_queries": evaluated,
            f"{protocol}_correct": correct, f"{protocol}_skipped": queries - evaluated}


def _load(source):
    from mcnn_keras.io import features_table  # pylint: disable=import-outside-toplevel
    if isinstance(source, features_table.FeaturesFile):
        return source, "features"
    if isinstance(source, tuple) and len(source) == 2:
        metadata, features = source
        return features_table.FeaturesFile(metadata, np.asarray(features), None, None), "features"
    return features_table.read_table(source, required=(COMPOUND, CONCENTRATION, MOA)), str(source)


def evaluate(source, aggregate_method="median", normalization="none", batch=DEFAULT_BATCH,
             control=CONTROL):
    """Everything `mcnn-profile` does, in one call.

    source: a features table path, a features_table.FeaturesFile or a
    (metadata, features) pair. Returns {"summary": the JSON-able metrics
    (nsc_accuracy, nscb_accuracy, counts, settings), "treatments":
    Treatments, "nsc"/"nscb": `match` results, "confusion": {protocol:
    (labels, matrix)}, "feature_names", "extra"}; `report.write_report`
    writes it as profiles.parquet, treatments.csv, metrics.json and the PNGs.
    """
    table, name = _load(source)
    metadata, features = table.metadata, table.features
    for column in (COMPOUND, CONCENTRATION, MOA):
        _require(metadata, column, name, "to group fields into treatments")
    is_control = np.array([c == control or m == control
                           for c, m in zip(metadata[COMPOUND], metadata[MOA])], bool)
    if normalization != "none":
        _require(metadata, PLATE, name, f"for --normalize={normalization}")
    features = normalize(features, metadata.get(PLATE, [""] * len(features)), is_control,
                         normalization, name)
    batches = field_batches(metadata, batch, name)
    treatments = aggregate(metadata, features, aggregate_method, batches, control, name)
    similarity = cosine_similarity(treatments.profiles)
    results = {p: match(treatments, p, similarity) for p in ("nsc", "nscb")}
    query = treatments.is_query
    summary = {**summarize(treatments, results["nsc"], "nsc", batch),
               **summarize(treatments, results["nscb"], "nscb", batch),
               "num_fields": len(features), "num_treatments": len(treatments),
               "num_queries": int(query.sum()),
               "num_compounds": len({c for c, q in zip(treatments.compound, query) if q}),
               "num_moas": len({m for m, q in zip(treatments.moa, query) if q}),
               "num_control_treatments": int(treatments.is_control.sum()),
               "num_unlabelled_treatments": int(sum(not m for m in treatments.moa)),
               "num_batches": len({b for b in batches if b}),
               "aggregate": aggregate_method, "normalize": normalization, "batch": batch,
               "control": control, "features": name}
    result = {"summary": summary, "treatments": treatments, **results,
              "confusion": {p: confusion(treatments, results[p]) for p in results},
              "feature_names": table.feature_names, "extra": table.extra}
    return result
