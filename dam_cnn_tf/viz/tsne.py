"""t-SNE pictures of representations, like the paper's Fig. 6 (R1 raw pixels, R2 salient
features, R3 MPAE codes), with scikit-learn's ``TSNE``.

Drawn with matplotlib when it is installed (the optional ``viz`` extra), otherwise with
OpenCV: one panel per representation, one colour per class, a legend below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dam_cnn_tf.viz.attention import write_png

# Distinct colours (RGB) for up to eight classes.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127))


def tsne_embedding(x, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``x`` ``(n, d)`` (flattened if needed); perplexity capped below ``n``."""
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(x)}")
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def _opencv_panels(panels, labels, class_names, panel_size: int = 360) -> np.ndarray:
    title_h, legend_h, pad = 28, 22 * ((len(class_names) + 3) // 4) + 8, 10
    width = len(panels) * panel_size
    image = np.full((title_h + panel_size + legend_h, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for p, (title, xy) in enumerate(panels):
        left = p * panel_size
        cv2.putText(image, title, (left + pad, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(image, (left + pad, title_h), (left + panel_size - pad, title_h + panel_size - 2 * pad),
                      (200, 200, 200), 1)
        xy = np.asarray(xy, dtype=np.float64)
        low, span = xy.min(axis=0), np.maximum(np.ptp(xy, axis=0), 1e-9)
        inner = panel_size - 4 * pad
        points = (xy - low) / span * inner + [left + 2 * pad, title_h + pad]
        for (x, y), label in zip(points, labels):
            colour = PALETTE[int(label) % len(PALETTE)]
            cv2.circle(image, (int(round(x)), int(round(y))), 3, colour, -1, cv2.LINE_AA)
    top = title_h + panel_size
    for k, name in enumerate(class_names):
        row, col = divmod(k, 4)
        x, y = pad + col * 130, top + 16 + row * 22
        cv2.circle(image, (x + 5, y - 5), 5, PALETTE[k % len(PALETTE)], -1, cv2.LINE_AA)
        cv2.putText(image, name, (x + 16, y), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def _matplotlib_panels(panels, labels, class_names, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3), squeeze=False)
    labels = np.asarray(labels)
    for ax, (title, xy) in zip(axes[0], panels):
        for k, name in enumerate(class_names):
            chosen = labels == k
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=9, color=np.array(PALETTE[k % len(PALETTE)]) / 255, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="upper center", bbox_to_anchor=(0.5 * len(panels), -0.02), ncol=min(8, len(class_names)),
                      fontsize=8, frameon=False)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def tsne_figure(panels: Sequence, labels, class_names, path, backend: str = "auto") -> Path:
    """Scatter plots of 2-D embeddings ``panels = [(title, (n, 2)), ...]`` coloured by class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if backend not in ("auto", "matplotlib", "opencv"):
        raise ValueError(f"backend must be auto, matplotlib or opencv, got {backend!r}")
    if backend == "auto":
        try:
            import matplotlib  # noqa: F401

            backend = "matplotlib"
        except ImportError:
            backend = "opencv"
    if backend == "matplotlib":
        _matplotlib_panels(panels, labels, class_names, path)
    else:
        write_png(path, _opencv_panels(panels, labels, class_names))
    return path
