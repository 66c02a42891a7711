"""How much of SERD's attention falls on the expression regions (a measurable check of §4.2.1).

SERD's mask ``M = tanh(·)`` (Eq. 1) lies in (-1, 1) and multiplies the feature map: a positive
weight keeps (and a larger one keeps more of) a feature, zero or below suppresses or flips it.
The **mask mass** of a face is therefore the positive part of the mask as drawn over the
image: ``A = max(resize(M), 0)``, where ``resize`` is the bilinear resize of the ``h x w``
mask to the face's ``H x W`` pixels used for the pictures (``attention_heatmap``, OpenCV
``INTER_LINEAR``: half-pixel centres, edges clamped), applied before the positive part.

For a face with known expression pixels ``E`` (the synthetic faces' ``expression_mask``:
brows, eyes and mouth), the **share inside** is ``sum(A * E) / sum(A)`` and the **area share**
is ``mean(E)``. A mask that ignores where the expression is has share inside ≈ area share;
one that attends to the expression has share inside > area share. A face whose mask has no
positive weight anywhere has no share inside; it is counted, not averaged.
"""

from __future__ import annotations

import numpy as np

from dam_cnn_tf.viz.attention import attention_heatmap


class AttentionCheckError(ValueError):
    pass


def positive_mass(mask, size) -> np.ndarray:
    """``max(resize_bilinear(M, size), 0)``: the mask's keeping weight at every pixel."""
    return np.maximum(attention_heatmap(mask, size), 0.0).astype(np.float64)


def region_mass_share(mask, region) -> tuple:
    """``(share inside, area share)`` of one face; share inside is NaN without positive mass."""
    region = np.asarray(region, dtype=bool)
    if region.ndim != 2:
        raise AttentionCheckError(f"region must be an (H, W) boolean array, got shape {region.shape}")
    mass = positive_mass(mask, region.shape)
    total = mass.sum()
    inside = float(mass[region].sum() / total) if total > 0 else float("nan")
    return inside, float(region.mean())


def attention_check(masks, regions) -> dict:
    """Mean ± std over faces of the share inside, the area share and their ratio."""
    if len(masks) != len(regions) or not len(masks):
        raise AttentionCheckError(f"need one region per mask and at least one face, got {len(masks)} and {len(regions)}")
    pairs = np.array([region_mass_share(m, r) for m, r in zip(masks, regions)], dtype=np.float64)
    usable = np.isfinite(pairs[:, 0])
    inside, area = pairs[usable, 0], pairs[usable, 1]
    ratio = inside / np.maximum(area, 1e-12)

    def stats(values):
        return {"mean": float(values.mean()) if values.size else float("nan"),
                "std": float(values.std()) if values.size else float("nan")}

    return {
        "faces": int(len(masks)),
        "faces_without_positive_mass": int((~usable).sum()),
        "share_inside": stats(inside),
        "area_share": stats(area),
        "ratio": stats(ratio),
    }
