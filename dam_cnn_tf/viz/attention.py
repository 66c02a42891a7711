"""Pictures of SERD's attention mask ``M`` (paper Eq. 1) over the face, as in Fig. 8 and Fig. 9.

The mask is ``h x w`` (7x7 for a 224x224 VGG-Face input); §4.2.1 says "we directly resize the
mask by bilinear interpolation" to the image size, which ``attention_heatmap`` does with
OpenCV's ``INTER_LINEAR`` (half-pixel centres, edges clamped).

Colours: ``M = tanh(·)`` lies in (-1, 1). ``scale="fixed"`` (the default) maps that whole range
linearly onto the colour map, -1 → coldest, 0 → middle, +1 → warmest, so colours mean the same
weight in every picture and pictures of different images and classes compare (Fig. 9).
``scale="image"`` stretches each mask's own minimum..maximum onto the colour map instead: it
shows where the weight is highest within one face even when the mask barely varies (an
untrained or weakly regularised SERD), but the same colour then means different weights in
different pictures. A constant mask has no range to stretch and is drawn at the middle colour.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

SCALES = ("fixed", "image")
MASK_RANGE = (-1.0, 1.0)  # tanh's range (Eq. 1)
_CAPTION_PAD = 4


class AttentionVizError(ValueError):
    """Bad arguments to an attention picture; the message names the argument or file."""


def _check_mask(mask) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2 or mask.size == 0:
        raise AttentionVizError(f"mask must be a non-empty (h, w) array, got shape {mask.shape}")
    if not np.all(np.isfinite(mask)):
        raise AttentionVizError("mask holds NaN or infinite values")
    return mask


def _check_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise AttentionVizError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0:
        raise AttentionVizError(f"image must be (H, W, 3) RGB or (H, W) grey, got shape {image.shape}")
    return image


def attention_heatmap(mask, size: Tuple[int, int]) -> np.ndarray:
    """SERD's mask ``(h, w)`` resized bilinearly to ``size = (H, W)`` (§4.2.1, Fig. 8); float32.

    Values stay within the mask's own range: bilinear interpolation only averages neighbours.
    """
    mask = _check_mask(mask)
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise AttentionVizError(f"size must be two positive ints (H, W), got {size!r}")
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


def heat_levels(heatmap: np.ndarray, scale: str = "fixed") -> np.ndarray:
    """Colour-map indices ``uint8`` in 0-255 for a heat map; see the module notes on ``scale``."""
    if scale not in SCALES:
        raise AttentionVizError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}")
    if scale == "fixed":
        low, high = MASK_RANGE
    else:
        low, high = float(heatmap.min()), float(heatmap.max())
        if high - low <= 1e-12:
            return np.full(heatmap.shape, 128, np.uint8)
    unit = np.clip((heatmap - low) / (high - low), 0.0, 1.0)
    return np.rint(unit * 255.0).astype(np.uint8)


def colorize_attention(mask, size: Tuple[int, int], colormap: int = cv2.COLORMAP_JET,
                       scale: str = "fixed") -> np.ndarray:
    """The mask resized to ``size`` and colour-mapped: uint8 RGB ``(H, W, 3)``, warm = high weight."""
    levels = heat_levels(attention_heatmap(mask, size), scale)
    return cv2.cvtColor(cv2.applyColorMap(levels, colormap), cv2.COLOR_BGR2RGB)


def overlay_attention(image, mask, alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET,
                      scale: str = "fixed") -> np.ndarray:
    """The face ``image`` (uint8 RGB or grey) blended with its colour-mapped attention (Fig. 8).

    ``(1 - alpha) * image + alpha * heat``, rounded, uint8 RGB of the image's size.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise AttentionVizError(f"alpha must lie in [0, 1], got {alpha!r}")
    image = _check_rgb(image)
    heat = colorize_attention(mask, image.shape[:2], colormap, scale)
    return cv2.addWeighted(image, 1.0 - float(alpha), heat, float(alpha), 0.0)


def _fit_caption(text: str, width: int) -> tuple:
    """Font scale and thickness so ``text`` fits ``width`` pixels (down to a legible minimum)."""
    font_scale = max(0.3, min(1.0, width / 160.0))
    thickness = 1
    while font_scale > 0.3:
        (text_width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        if text_width <= width - 2 * _CAPTION_PAD:
            break
        font_scale -= 0.05
    return font_scale, thickness


def _caption_strip(text: str, width: int) -> np.ndarray:
    font_scale, thickness = _fit_caption(text, width)
    (_, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    strip = np.full((text_height + baseline + 2 * _CAPTION_PAD, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (_CAPTION_PAD, _CAPTION_PAD + text_height), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return strip


def write_png(path: Union[str, os.PathLike], rgb: np.ndarray) -> Path:
    """Write an RGB uint8 array as PNG to a temporary name, then rename onto ``path``."""
    path = Path(path)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise AttentionVizError(f"cannot encode {path} as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    except OSError as err:
        raise AttentionVizError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def attention_grid(images: Sequence, masks: Sequence, labels: Sequence[str], path=None, *,
                   columns: Optional[int] = None, cell_size: Optional[Tuple[int, int]] = None,
                   alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET, scale: str = "fixed",
                   spacing: int = 4) -> np.ndarray:
    """A grid of faces with their attention overlaid and a caption under each (Fig. 9 style).

    Every cell is resized to ``cell_size = (H, W)`` (default: the first image's size).
    ``columns`` defaults to about the square root of the count. Returns the grid (uint8 RGB);
    with ``path`` also writes it there as PNG (atomically).
    """
    if not (len(images) == len(masks) == len(labels)):
        raise AttentionVizError(
            f"images, masks and labels must have one entry each, got {len(images)}, {len(masks)} and {len(labels)}")
    if not len(images):
        raise AttentionVizError("attention_grid needs at least one image")
    first = _check_rgb(images[0])
    height, width = (int(s) for s in (cell_size or first.shape[:2]))
    if height < 1 or width < 1:
        raise AttentionVizError(f"cell_size must be two positive ints (H, W), got {cell_size!r}")
    columns = int(columns or int(np.ceil(np.sqrt(len(images)))))
    if columns < 1:
        raise AttentionVizError(f"columns must be positive, got {columns}")
    cells = []
    for image, mask, label in zip(images, masks, labels):
        image = _check_rgb(image)
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        overlay = overlay_attention(image, mask, alpha, colormap, scale)
        cells.append((overlay, " ".join(str(label).split())))
    strips = [_caption_strip(text, width) for _, text in cells]
    strip_height = max(s.shape[0] for s in strips)
    cell_height = height + strip_height
    rows = int(np.ceil(len(cells) / columns))
    grid = np.full((rows * cell_height + (rows + 1) * spacing, columns * width + (columns + 1) * spacing, 3),
                   255, np.uint8)
    for index, ((overlay, _), strip) in enumerate(zip(cells, strips)):
        row, col = divmod(index, columns)
        top, left = spacing + row * (cell_height + spacing), spacing + col * (width + spacing)
        grid[top:top + height, left:left + width] = overlay
        grid[top + height:top + height + strip.shape[0], left:left + width] = strip
    if path is not None:
        write_png(path, grid)
    return grid
