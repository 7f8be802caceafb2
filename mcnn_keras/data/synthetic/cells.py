"""One synthetic cell: where the cells of a field go and how one is drawn.

`synthetic.render_field` places a field's cells with `place_cells` and draws
each with `draw_cell`, given its class's `synthetic.CellStyle` (any object
with the same attributes): body shape, nucleus (DNA channel), microtubules
(tubulin) and actin, sharp, before the field's blur and noise. Both draw only
from the `rng` they are given, in a fixed order. `cell_frame` (a cell's window
and body coordinates), `cut_vacuoles` and `draw_nucleus` (the chromatin by
`style.dna`) are shared with the Cell Painting cell (`cell_painting`).

Usage:

    fields = np.zeros((3, height, width), np.float32)    # DNA, tubulin, actin
    centres, angles = place_cells(style, count, height, width, radius, rng)
    for (cy, cx), angle in zip(centres, angles):
        draw_cell(fields, style, cy, cx, angle, radius, scale, rng)
"""

import numpy as np


def place_cells(style, count, height, width, radius, rng):
    """Returns (count, 2) cell centres (y, x) and (count,) body angles."""
    angles = rng.uniform(0, np.pi, count)
    if style.arrangement == "clustered":  # a few tight groups
        groups = rng.uniform((0, 0), (height, width), (rng.integers(1, 4), 2))
        centres = groups[rng.integers(0, len(groups), count)]
        centres = centres + rng.normal(0, 1.6 * radius, (count, 2))
    elif style.arrangement == "sheet":  # one compact colony on a jittered hex lattice
        spacing = 1.75 * radius
        side = int(np.ceil(np.sqrt(count))) + 3
        j, i = np.meshgrid(np.arange(-side, side + 1), np.arange(-side, side + 1))
        lattice = np.stack([i * spacing * 0.866, (j + 0.5 * (i % 2)) * spacing], -1)
        lattice = lattice.reshape(-1, 2)
        nearest = np.argsort(np.hypot(*lattice.T) + rng.uniform(0, spacing, len(lattice)))
        centres = lattice[nearest[:count]] + rng.normal(0, 0.12 * spacing, (count, 2))
        centres = centres + rng.uniform((0, 0), (height, width))
    else:
        centres = rng.uniform((0, 0), (height, width), (count, 2))
        if style.arrangement == "aligned":  # one common direction, cells in a stream
            angles = rng.uniform(0, np.pi) + rng.normal(0, 0.12, count)
    return centres, angles


def ridges(phase, sharpness):
    """Thin bright lines where `phase` crosses multiples of 2 pi."""
    return ((1 + np.cos(phase)) / 2) ** sharpness


def cell_frame(height, width, cy, cx, angle, a, b, reach):
    """The window of a cell with half axes (a, b) and its coordinates in it.

    Returns None if the window misses the field, else (window, u, v, rho,
    theta): `window` = (slice of rows, slice of columns), (u, v) the offsets
    along / across the body axis, rho the elliptic radius (1 on the outline).

        window, u, v, rho, theta = cell_frame(128, 128, 60.0, 40.0, 0.3, 14.0, 9.0, 18.0)
    """
    y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, height))
    x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, width))
    if y0 >= y1 or x0 >= x1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos  # along / across the body
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    theta = np.arctan2(v, u)
    return (slice(y0, y1), slice(x0, x1)), u, v, rho, theta


def cut_vacuoles(body, u, v, a, b, edge, rng):
    """`body` with three to six dark round holes in the cytoplasm."""
    for _ in range(rng.integers(3, 7)):
        r, t = rng.uniform(0.45, 0.8), rng.uniform(0, 2 * np.pi)
        hole = np.hypot(u - r * a * np.cos(t), v - r * b * np.sin(t))
        body = body * np.clip((hole - 0.17 * b) / edge, 0, 1)
    return body


def draw_nucleus(style, u, v, b, edge, scale, rng):
    """The chromatin (DNA stain) of one cell and its nucleus mask, by `style.dna`.

    Returns (dna, nucleus, (na, nb)): the DNA intensity, the soft mask of the
    main nucleus (or of the nuclei, for "multi") and the half axes of the
    main nucleus' ellipse.

        dna, nucleus, (na, nb) = draw_nucleus(style, u, v, b, 1.2, 1.0, rng)
    """
    nr = style.nucleus * b  # nucleus radius
    na, nb = nr * rng.uniform(1.0, 1.25), nr
    if style.arrangement == "aligned":
        na = nr * 1.7
    dna = np.zeros_like(u)
    nucleus = np.clip((1 - np.sqrt((u / na) ** 2 + (v / nb) ** 2)) * nb / edge, 0, 1)
    if style.dna == "multi":  # two to four nuclei side by side
        dna = np.zeros_like(dna)
        count = rng.integers(3, 6)
        for k in range(count):
            t = 2 * np.pi * k / count + rng.uniform(0, 1)
            r = 0.62 * nr
            dist = np.hypot(u - 1.1 * r * np.cos(t), v - 1.1 * r * np.sin(t))
            dna = np.maximum(dna, np.clip((0.62 * nr - dist) / edge, 0, 1))
        nucleus = dna
    elif style.dna == "ring":  # monoastral chromatin ring around a hole
        d = np.hypot(u, v)
        dna = np.clip((0.28 * nr - np.abs(d - 0.68 * nr)) / (0.7 * edge), 0, 1)
    elif style.dna == "fragments":  # condensed chromosomes: a cluster of blobs
        for _ in range(rng.integers(5, 9)):
            oy, ox = rng.normal(0, 0.5 * nr, 2)
            dist = np.hypot(u - ox, v - oy)
            dna = np.maximum(dna, np.clip((0.3 * nr - dist) / (0.6 * edge), 0, 1))
    else:
        dna = 0.75 * nucleus
        if style.dna == "foci":  # bright damage foci inside a large nucleus
            spots = np.zeros_like(dna)
            for _ in range(rng.integers(5, 10)):
                oy, ox = rng.uniform(-0.65, 0.65, 2) * (nb, na)
                spots = np.maximum(spots, np.exp(-((u - ox) ** 2 + (v - oy) ** 2)
                                                 / (2 * (0.9 * scale) ** 2)))
            dna = dna * 0.55 + 1.2 * spots * nucleus
        elif style.dna == "nucleoli":  # dark nucleoli in a large nucleus
            for _ in range(rng.integers(2, 4)):
                oy, ox = rng.uniform(-0.45, 0.45, 2) * (nb, na)
                hole = np.hypot(u - ox, v - oy)
                dna = dna * np.clip((hole - 0.22 * nr) / (0.6 * edge), 0.1, 1)
        elif style.dna == "micronuclei":  # small extra nuclei around the main one
            for _ in range(rng.integers(3, 6)):
                t, r = rng.uniform(0, 2 * np.pi), rng.uniform(1.3, 1.7) * nr
                dist = np.hypot(u - r * np.cos(t), v - r * np.sin(t))
                dna = np.maximum(dna, 0.9 * np.clip((0.3 * nr - dist) / (0.6 * edge), 0, 1))
    return dna, nucleus, (na, nb)


def draw_cell(fields, style, cy, cx, angle, radius, scale, rng):
    """Adds one cell to the (3, H, W) float32 `fields` (sharp, before blur)."""
    _, height, width = fields.shape
    aspect = rng.uniform(*style.aspect)
    a = radius * np.sqrt(aspect)  # half length along the body axis
    b = radius / np.sqrt(aspect)
    reach = a * (2.2 if style.actin == "protrusions" else 1.15) + 2
    frame = cell_frame(height, width, cy, cx, angle, a, b, reach)
    if frame is None:
        return
    window, u, v, rho, theta = frame
    edge = 1.2 * scale
    body = np.clip((1 - rho) * b / edge, 0, 1)
    if style.vacuoles:  # dark round holes in the cytoplasm
        body = cut_vacuoles(body, u, v, a, b, edge, rng)
    dna, nucleus, (na, nb) = draw_nucleus(style, u, v, b, edge, scale, rng)
    nr = style.nucleus * b
    cyto = body * (1 - 0.7 * nucleus)

    # Tubulin: microtubules radiate from the centrosome unless the drug changed them.
    lines = int(rng.integers(10, 16))
    wobble = 0.3 * np.sin(rho * rng.uniform(3, 6) + rng.uniform(0, 6))
    radial = ridges(lines * theta + wobble + rng.uniform(0, 6), 6)
    tubulin = cyto * (0.25 + 0.75 * radial)
    if style.tubulin == "bundles":  # thick straight bundles running along the cell
        bundles = ridges(v * (2 * np.pi / (0.55 * b)) + rng.uniform(0, 6), 3)
        tubulin = body * (0.1 + 1.2 * bundles)
    elif style.tubulin == "diffuse":  # no filaments left: smooth cytoplasm
        tubulin = 0.6 * cyto
    elif style.tubulin == "aster":  # one bright spindle pole in the middle
        tubulin = 0.2 * body + 1.5 * np.exp(-(u ** 2 + v ** 2) / (2 * (0.3 * nr) ** 2))
        tubulin = tubulin + 0.6 * body * radial * (rho < 0.8)
    elif style.tubulin == "aggresome":  # perinuclear aggregate beside the nucleus
        t = rng.uniform(0, 2 * np.pi)
        oy, ox = 1.25 * nb * np.sin(t), 1.25 * na * np.cos(t)
        tubulin = tubulin + 1.6 * np.exp(-((u - ox) ** 2 + (v - oy) ** 2)
                                         / (2 * (0.3 * nr) ** 2))

    # Actin: cortex plus stress fibres, unless disrupted or remodelled.
    cortex = np.exp(-((rho - 0.92) / 0.09) ** 2) * (rho < 1.05)
    fibres = ridges(v * (2 * np.pi / (0.35 * b)) + rng.uniform(0, 6), 8)
    actin = 0.6 * cortex + 0.15 * body + 0.5 * body * fibres * (rho < 0.85)
    if style.actin == "punctate":  # actin aggregates into dots, no fibres
        dots = np.zeros_like(rho)
        for _ in range(rng.integers(6, 12)):
            r, t = np.sqrt(rng.uniform(0.05, 0.8)), rng.uniform(0, 2 * np.pi)
            dots = np.maximum(dots, np.exp(-((u - r * a * np.cos(t)) ** 2
                                              + (v - r * b * np.sin(t)) ** 2)
                                            / (2 * (1.0 * scale) ** 2)))
        actin = 0.12 * body + 1.2 * dots
    elif style.actin == "rim":  # thick bright cortical rim only
        actin = 1.1 * np.exp(-((rho - 0.9) / 0.14) ** 2) * (rho < 1.1) + 0.1 * body
    elif style.actin == "protrusions":  # long thin spikes reaching out of the cell
        spikes = ridges(int(rng.integers(5, 9)) * theta + rng.uniform(0, 6), 40)
        reach_mask = np.clip((2.1 - rho) / 0.3, 0, 1) * (rho > 0.6)
        actin = actin + 0.9 * spikes * reach_mask
        if style.tubulin == "protrusions":
            tubulin = tubulin * (rho < 1) + 0.6 * spikes * reach_mask

    gain = rng.uniform(0.7, 1.3, 3)  # cell-to-cell heterogeneity
    for channel, value in enumerate((dna, tubulin, actin)):
        patch = fields[(channel,) + window]
        np.maximum(patch, gain[channel] * value, out=patch)
