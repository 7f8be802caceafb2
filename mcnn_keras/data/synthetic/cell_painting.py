"""One synthetic Cell Painting cell: five stains, each in its own compartment.

The channels, in the order the records store them (`CELL_PAINTING_CHANNELS`):

- DNA (Hoechst): the nucleus (or nuclei, micronuclei, chromatin fragments);
- ER (concanavalin A): a reticular network in a band around the nucleus, with
  the nuclear envelope as a bright rim;
- RNA (SYTO 14): bright nucleoli inside the nucleus, dim nucleoplasm and a
  diffuse cytoplasmic haze that fades away from the nucleus;
- AGP (phalloidin + WGA): the plasma membrane outline, cortical actin and
  fibres, and a compact Golgi crescent beside the nucleus;
- Mito (MitoTracker): punctate and short tubular mitochondria in the cytoplasm.

A class's `CellPaintingStyle` moves them: fragmented or multiple nuclei, ER
collapse / spread / swelling, nucleolar loss, enlargement or segregation,
stress granules, Golgi dispersal, actin disruption, stress fibres or
protrusions, mitochondrial fragmentation, networks, perinuclear clustering or
swelling, and the cell's size and shape (`STYLES`: one per mechanism of
action, the geometry of `generator.STYLES`). `generator.render_field(...,
stains="cell_painting")` places the cells (`cells.place_cells`) and adds the
microscope, noise and class-blind exposure of every field.

Usage:

    fields = np.zeros((5, height, width), np.float32)   # DNA, ER, RNA, AGP, Mito
    masks = np.zeros((3, height, width), np.float32)    # nuclei, bodies, cytoplasm
    draw_cell_painting_cell(fields, STYLES["DMSO"], 60.0, 40.0, 0.3, 11.0, 1.0, rng, masks)
"""

import dataclasses

import numpy as np

from mcnn_keras.data import classes
from mcnn_keras.data.synthetic.cells import cell_frame, cut_vacuoles, draw_nucleus, ridges

CELL_PAINTING_CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
# Mitochondria per unit of a control cell's area: the count scales with the cell.
MITO_PER_CELL = 22


@dataclasses.dataclass(frozen=True)
class CellPaintingStyle:
    """How the cells of one class look in the five stains (radii relative to the base)."""

    radius: float = 1.0
    aspect: tuple = (1.1, 1.6)  # major / minor axis of the cell body
    nucleus: float = 0.45  # nucleus radius / cell minor radius
    dna: str = "oval"  # as cells.draw_nucleus: oval, multi, foci, ring, fragments, ...
    arrangement: str = "random"  # random, clustered, sheet, aligned (cells.place_cells)
    vacuoles: bool = False
    er: str = "reticular"  # reticular, collapsed, spread, swollen
    rna: str = "nucleoli"  # nucleoli, lost, enlarged, segregated, granules
    golgi: str = "compact"  # compact, dispersed
    actin: str = "fibres"  # fibres, punctate, rim, stress, protrusions
    mito: str = "puncta"  # puncta, fragmented, network, perinuclear, swollen


_S = CellPaintingStyle
STYLES = {
    "Actin disruptors": _S(actin="punctate"),
    "Aurora kinase inhibitors": _S(radius=1.55, aspect=(1.0, 1.3), nucleus=0.5, dna="multi",
                                   er="spread", rna="enlarged", mito="network"),
    "Cholesterol-lowering": _S(radius=1.1, aspect=(2.8, 3.8), nucleus=0.7,
                               arrangement="aligned", golgi="dispersed", actin="stress"),
    "DNA damage": _S(radius=1.1, aspect=(1.4, 1.9), nucleus=0.65, dna="foci",
                     rna="segregated", actin="stress", mito="network"),
    "DNA replication": _S(radius=0.9, aspect=(1.0, 1.3), nucleus=0.72, dna="nucleoli",
                          arrangement="clustered", rna="enlarged"),
    "Eg5 inhibitors": _S(radius=0.85, aspect=(1.0, 1.1), nucleus=0.7, dna="ring",
                         er="spread", rna="lost", golgi="dispersed", actin="rim"),
    "Epithelial": _S(radius=0.95, aspect=(1.0, 1.25), arrangement="sheet", actin="rim"),
    "Kinase inhibitors": _S(radius=0.8, aspect=(1.0, 1.3), actin="protrusions",
                            mito="perinuclear"),
    "Microtubule destabilizers": _S(radius=0.85, aspect=(1.0, 1.15), nucleus=0.6,
                                    dna="fragments", er="collapsed", rna="lost",
                                    golgi="dispersed", actin="rim", mito="perinuclear"),
    "Microtubule stabilizers": _S(dna="micronuclei", er="collapsed", golgi="dispersed"),
    "Protein degradation": _S(vacuoles=True, er="swollen", mito="swollen"),
    "Protein synthesis": _S(radius=0.65, aspect=(1.0, 1.3), nucleus=0.6, rna="granules",
                            mito="fragmented"),
    classes.DMSO: _S(),
}
CONTROL = STYLES[classes.DMSO]


@dataclasses.dataclass(frozen=True)
class _Cell:
    """One cell's coordinates and compartments in its window (all H' x W')."""

    u: np.ndarray  # along the body axis
    v: np.ndarray  # across it
    rho: np.ndarray  # elliptic radius of the body (1 on the outline)
    theta: np.ndarray
    a: float  # half axes of the body
    b: float
    na: float  # half axes of an ellipse around the nucleus (or nuclei)
    nb: float
    scale: float  # the field's size factor: 1 up to 256 pixels, then grows
    body: np.ndarray  # soft mask of the cell body
    nucleus: np.ndarray  # soft mask of the chromatin compartment
    cyto: np.ndarray  # body minus nucleus
    gap: np.ndarray  # distance (pixels) from the nucleus ellipse, 0 inside


def _mesh(u, v, wavelength, width, rng, waves=5):
    """A random network of lines: where a sum of plane waves crosses zero.

    `wavelength` (pixels) sets the mesh size, `width` (relative) the line width.
    """
    total = np.zeros_like(u)
    for phi, psi in zip(rng.uniform(0, np.pi, waves), rng.uniform(0, 2 * np.pi, waves)):
        total += np.cos((u * np.cos(phi) + v * np.sin(phi)) * (2 * np.pi / wavelength) + psi)
    return np.exp(-(total / (width * np.sqrt(waves / 2))) ** 2)


def _spots(cell, points, sigma):
    """The brighter of Gaussian spots (std `sigma` pixels) at (u, v) `points`."""
    if not len(points):
        return np.zeros_like(cell.u)
    du = cell.u[None] - points[:, 0, None, None]
    dv = cell.v[None] - points[:, 1, None, None]
    return np.exp(-(du ** 2 + dv ** 2).min(axis=0) / (2 * sigma ** 2))


def _cytoplasm_points(cell, count, rng, inner=0.05, outer=0.95):
    """(count, 2) random (u, v) points between the nucleus and the outline.

    `inner`..`outer` is the range of the relative position from the nucleus
    ellipse (0) to the cell outline (1); square-root spacing spreads them evenly.
    """
    t = rng.uniform(0, 2 * np.pi, count)
    s = inner + (outer - inner) * np.sqrt(rng.uniform(0, 1, count))
    s = 0.12 + 0.8 * s  # off the nucleus' rim, inside the membrane
    radius_u = (1 - s) * cell.na + s * cell.a
    radius_v = (1 - s) * cell.nb + s * cell.b
    return np.stack([radius_u * np.cos(t), radius_v * np.sin(t)], -1)


def _nuclear_points(cell, count, spread, rng):
    """(count, 2) random (u, v) points inside the nucleus, within `spread` of its radii."""
    return rng.uniform(-spread, spread, (count, 2)) * (cell.na, cell.nb)


def _er(cell, style, rng):
    """ER: a reticulum in a band around the nucleus, the envelope as a rim."""
    nr = cell.nb
    mesh = _mesh(cell.u, cell.v, 2.8 * cell.scale, 0.35, rng)
    rim = np.exp(-(cell.gap / (1.0 * cell.scale)) ** 2)
    if style.er == "collapsed":  # retracted onto the nucleus: dense, bright, narrow
        return cell.cyto * (1.4 * np.exp(-cell.gap / (0.25 * nr)) * (0.7 + 0.3 * mesh)
                            + 0.8 * rim)
    if style.er == "spread":  # no perinuclear band: a faint net over the whole cell
        return cell.cyto * (0.2 + 0.45 * mesh) * np.exp(-cell.gap / (2.5 * nr))
    band = np.exp(-cell.gap / (0.8 * nr))
    if style.er == "swollen":  # dilated cisternae: coarse bright sheets with dark lumina
        coarse = _mesh(cell.u, cell.v, 6.0 * cell.scale, 0.8, rng)
        lumina = _spots(cell, _cytoplasm_points(cell, int(rng.integers(4, 8)), rng),
                        1.1 * cell.scale)
        return cell.cyto * (band * (0.35 + 1.1 * coarse) * (1 - 0.8 * lumina) + 0.4 * rim)
    return cell.cyto * (band * (0.3 + 0.9 * mesh) + 0.6 * rim)


def _rna(cell, style, rng):
    """RNA: nucleoli in a dim nucleoplasm, and cytoplasmic RNA near the nucleus."""
    nr, scale = cell.nb, cell.scale
    haze = cell.cyto * np.exp(-cell.gap / (1.5 * nr))
    nucleoplasm = 0.2 * cell.nucleus
    if style.rna == "lost":  # nucleoli disassembled: an even nucleoplasm
        return 0.4 * cell.nucleus + 0.3 * haze
    if style.rna == "enlarged":  # one or two big nucleoli
        points = _nuclear_points(cell, int(rng.integers(1, 3)), 0.3, rng)
        nucleoli = _spots(cell, points, 0.3 * nr)
    elif style.rna == "segregated":  # nucleolar caps: many small spots near the rim
        t = rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9)))
        r = rng.uniform(0.55, 0.8, len(t))[:, None]
        points = r * np.stack([cell.na * np.cos(t), cell.nb * np.sin(t)], -1)
        nucleoli = _spots(cell, points, 0.09 * nr + 0.3 * scale)
    else:
        points = _nuclear_points(cell, int(rng.integers(2, 5)), 0.45, rng)
        nucleoli = _spots(cell, points, 0.15 * nr + 0.2 * scale)
    rna = nucleoplasm + 1.1 * nucleoli * cell.nucleus
    if style.rna == "granules":  # translation stalled: stress granules, less free RNA
        granules = _spots(cell, _cytoplasm_points(cell, int(rng.integers(8, 15)), rng),
                          0.6 * scale)
        return rna + 0.12 * haze + 1.0 * granules * cell.cyto
    return rna + 0.35 * haze


def _golgi(cell, style, rng):
    """AGP's Golgi: a crescent of stacks on one side of the nucleus, or scattered."""
    if style.golgi == "dispersed":  # mini-stacks all over the cytoplasm
        points = _cytoplasm_points(cell, int(rng.integers(10, 17)), rng, 0.0, 0.9)
        return 0.9 * _spots(cell, points, 0.55 * cell.scale)
    t = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.6, 0.6, int(rng.integers(4, 7)))
    r = rng.uniform(1.15, 1.45, len(t))[:, None]
    points = r * np.stack([cell.na * np.cos(t), cell.nb * np.sin(t)], -1)
    return 1.2 * _spots(cell, points, 0.7 * cell.scale)


def _agp(cell, style, rng):
    """AGP: plasma membrane, cortical actin and fibres by `style.actin`, and the Golgi."""
    rho, b, scale = cell.rho, cell.b, cell.scale
    membrane = np.exp(-((rho - 0.97) / 0.06) ** 2)
    cortex = np.exp(-((rho - 0.9) / 0.09) ** 2) * (rho < 1.05)
    if style.actin == "punctate":  # actin aggregates into dots, no fibres
        dots = _spots(cell, _cytoplasm_points(cell, int(rng.integers(6, 12)), rng, 0.0, 0.8),
                      1.0 * scale)
        actin = 0.1 * cell.body + 1.1 * dots
    elif style.actin == "rim":  # a thick bright cortical rim only
        actin = 1.0 * np.exp(-((rho - 0.9) / 0.14) ** 2) * (rho < 1.1) + 0.08 * cell.body
    elif style.actin == "stress":  # thick parallel stress fibres across the whole cell
        fibres = ridges(cell.v * (2 * np.pi / (0.5 * b)) + rng.uniform(0, 6), 3)
        actin = 0.25 * cortex + 0.1 * cell.body + 0.9 * cell.body * fibres * (rho < 0.95)
    else:
        fibres = ridges(cell.v * (2 * np.pi / (0.35 * b)) + rng.uniform(0, 6), 8)
        actin = 0.4 * cortex + 0.12 * cell.body + 0.4 * cell.body * fibres * (rho < 0.85)
        if style.actin == "protrusions":  # long thin spikes reaching out of the cell
            spikes = ridges(int(rng.integers(5, 9)) * cell.theta + rng.uniform(0, 6), 40)
            actin = actin + 0.9 * spikes * np.clip((2.1 - rho) / 0.3, 0, 1) * (rho > 0.6)
    return 0.5 * membrane * (rho < 1.1) + actin + _golgi(cell, style, rng) * cell.cyto


def _mito(cell, style, rng):
    """Mito: puncta and short tubules in the cytoplasm, by `style.mito`."""
    scale = cell.scale
    area = cell.a * cell.b / (11.0 * scale) ** 2  # a control cell's area is about 1
    count = max(3, int(rng.poisson(MITO_PER_CELL * area)))
    if style.mito == "fragmented":  # many small round fragments, no tubules
        points = _cytoplasm_points(cell, 2 * count, rng)
        return 1.1 * _spots(cell, points, 0.4 * scale) * cell.cyto
    if style.mito == "swollen":  # a few large round mitochondria with dim matrices
        points = _cytoplasm_points(cell, max(2, count // 3), rng)
        big = _spots(cell, points, 1.2 * scale)
        return 1.2 * big * (1 - 0.5 * _spots(cell, points, 0.5 * scale)) * cell.cyto
    tubules = _mesh(cell.u, cell.v, 3.0 * scale, 0.3, rng)
    if style.mito == "network":  # hyperfused: one continuous tubular network
        return (0.15 + 1.0 * tubules) * cell.cyto * np.exp(-cell.gap / (2.0 * cell.nb))
    outer = 0.35 if style.mito == "perinuclear" else 0.95  # clustered round the nucleus
    points = _cytoplasm_points(cell, count, rng, 0.0, outer)
    puncta = _spots(cell, points, 0.6 * scale)
    near = np.exp(-cell.gap / (0.5 * cell.nb)) if outer < 0.5 else 1.0
    return (0.9 * puncta + 0.3 * tubules * near) * cell.cyto


def _cell(style, u, v, rho, theta, a, b, scale, rng):
    """The `_Cell` of one body: its nucleus drawn, the compartments derived."""
    edge = 1.2 * scale
    body = np.clip((1 - rho) * b / edge, 0, 1)
    if style.vacuoles:  # dark round holes in the cytoplasm
        body = cut_vacuoles(body, u, v, a, b, edge, rng)
    dna, nucleus, (na, nb) = draw_nucleus(style, u, v, b, edge, scale, rng)
    if style.dna == "multi":  # the ellipse around the group of nuclei
        na = nb = 1.3 * style.nucleus * b
    # Chromatin outside the main nucleus (micronuclei, fragments) is nucleus too.
    nucleus = np.maximum(nucleus, np.clip(dna / 0.5, 0, 1))
    gap = np.maximum(np.sqrt((u / na) ** 2 + (v / nb) ** 2) - 1, 0) * nb
    cell = _Cell(u, v, rho, theta, a, b, na, nb, scale, body, nucleus,
                 body * (1 - nucleus), gap)
    return cell, dna


def draw_cell_painting_cell(fields, style, cy, cx, angle, radius, scale, rng, masks=None):
    """Adds one cell to the (5, H, W) float32 `fields` (sharp, before blur).

    `style`: a `CellPaintingStyle`; (cy, cx) the centre, `angle` the body axis,
    `radius` the body's mean radius and `scale` the field's size factor, in
    pixels. `masks` (3, H, W) float32, if given, receives the soft masks of
    the nuclei (chromatin), the cell bodies and the cytoplasm (body minus
    nucleus), each the maximum over the cells.
    Draws only from `rng`, in a fixed order.
    """
    _, height, width = fields.shape
    aspect = rng.uniform(*style.aspect)
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    reach = a * (2.2 if style.actin == "protrusions" else 1.15) + 2
    frame = cell_frame(height, width, cy, cx, angle, a, b, reach)
    if frame is None:
        return
    window, u, v, rho, theta = frame
    cell, dna = _cell(style, u, v, rho, theta, a, b, scale, rng)
    stains = (dna, _er(cell, style, rng), _rna(cell, style, rng), _agp(cell, style, rng),
              _mito(cell, style, rng))
    gain = rng.uniform(0.7, 1.3, len(stains))  # cell-to-cell heterogeneity
    for channel, value in enumerate(stains):
        patch = fields[(channel,) + window]
        np.maximum(patch, gain[channel] * value, out=patch)
    if masks is not None:
        for index, mask in enumerate((cell.nucleus, cell.body, cell.cyto)):
            patch = masks[(index,) + window]
            np.maximum(patch, mask, out=patch)
