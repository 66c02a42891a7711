"""Attention pictures (paper §4.2.1, Fig. 8-9): bilinear resizing of SERD's mask, overlay, grid."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from dam_cnn_tf.viz.attention import (
    AttentionVizError, attention_grid, attention_heatmap, colorize_attention, heat_levels, overlay_attention,
)


def bilinear_half_pixel(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resizing written out: output pixel centre (i + 0.5) maps to source
    (i + 0.5) * in / out - 0.5, clamped to the edge pixels."""
    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    r0, r1, fr = axis(height, mask.shape[0])
    c0, c1, fc = axis(width, mask.shape[1])
    top = mask[r0][:, c0] * (1 - fc) + mask[r0][:, c1] * fc
    bottom = mask[r1][:, c0] * (1 - fc) + mask[r1][:, c1] * fc
    return top * (1 - fr)[:, None] + bottom * fr[:, None]


@pytest.mark.parametrize("in_shape,out_shape", [((7, 7), (224, 224)), ((7, 7), (50, 33)), ((3, 5), (4, 11)),
                                                ((6, 6), (3, 3))])
def test_heatmap_is_half_pixel_bilinear(in_shape, out_shape):
    mask = np.tanh(np.random.default_rng(1).normal(size=in_shape)).astype(np.float32)
    heat = attention_heatmap(mask, out_shape)
    assert heat.shape == out_shape and heat.dtype == np.float32
    np.testing.assert_allclose(heat, bilinear_half_pixel(mask.astype(np.float64), *out_shape), atol=1e-5)
    assert mask.min() - 1e-6 <= heat.min() and heat.max() <= mask.max() + 1e-6


def test_heatmap_matches_scipy_zoom_on_grid_mode():
    # An independent implementation: scipy's zoom with pixel-area alignment (grid_mode) and edge clamping.
    mask = np.tanh(np.random.default_rng(2).normal(size=(7, 7)))
    heat = attention_heatmap(mask, (28, 28))
    reference = ndimage.zoom(mask, 4, order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(heat, reference, atol=1e-5)


def test_heatmap_accepts_trailing_channel_and_rejects_bad_masks():
    mask = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4, 1)
    np.testing.assert_array_equal(attention_heatmap(mask, (8, 8)), attention_heatmap(mask[..., 0], (8, 8)))
    with pytest.raises(AttentionVizError, match="mask"):
        attention_heatmap(np.zeros((2, 2, 2)), (4, 4))
    with pytest.raises(AttentionVizError, match="NaN"):
        attention_heatmap(np.array([[np.nan, 0.0]]), (4, 4))
    with pytest.raises(AttentionVizError, match="size"):
        attention_heatmap(np.zeros((2, 2)), (0, 4))


def test_fixed_scale_maps_tanh_range_and_image_scale_stretches():
    heat = np.array([[-1.0, 0.0, 1.0, 0.1]], np.float32)
    np.testing.assert_array_equal(heat_levels(heat, "fixed"), [[0, 128, 255, 140]])
    narrow = np.array([[0.0, 0.05, 0.2]], np.float32)
    assert heat_levels(narrow, "fixed").max() < 160  # a weak mask stays near the middle colour
    np.testing.assert_array_equal(heat_levels(narrow, "image"), [[0, 64, 255]])
    np.testing.assert_array_equal(heat_levels(np.full((2, 2), 0.3, np.float32), "image"), np.full((2, 2), 128))
    with pytest.raises(AttentionVizError, match="scale"):
        heat_levels(heat, "global")


def _left_right_mask():
    mask = -np.ones((7, 7), np.float32)
    mask[:, :3] = 1.0  # high weight on the left
    return mask


def test_overlay_is_warm_where_weight_is_high():
    image = np.full((70, 70, 3), 128, np.uint8)
    out = overlay_attention(image, _left_right_mask(), alpha=0.6)
    assert out.shape == image.shape and out.dtype == np.uint8
    left, right = out[:, :20].reshape(-1, 3).mean(0), out[:, -20:].reshape(-1, 3).mean(0)
    assert left[0] > left[2] + 40  # red dominates on the high-weight side
    assert right[2] > right[0] + 40  # blue on the low-weight side


def test_overlay_blend_and_alpha_limits():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    mask = np.tanh(rng.normal(size=(7, 7))).astype(np.float32)
    np.testing.assert_array_equal(overlay_attention(image, mask, alpha=0.0), image)
    heat = colorize_attention(mask, (30, 40))
    np.testing.assert_array_equal(overlay_attention(image, mask, alpha=1.0), heat)
    # The heat map is JET on the levels, in RGB order.
    levels = heat_levels(attention_heatmap(mask, (30, 40)))
    np.testing.assert_array_equal(heat, cv2.applyColorMap(levels, cv2.COLORMAP_JET)[..., ::-1])
    blended = overlay_attention(image, mask, alpha=0.25).astype(int)
    expected = 0.75 * image.astype(float) + 0.25 * heat.astype(float)
    assert np.abs(blended - expected).max() <= 1
    grey = overlay_attention(image[..., 0], mask, alpha=0.25)
    assert grey.shape == (30, 40, 3)
    with pytest.raises(AttentionVizError, match="alpha"):
        overlay_attention(image, mask, alpha=1.5)
    with pytest.raises(AttentionVizError, match="uint8"):
        overlay_attention(image.astype(np.float32), mask)


def test_other_colormap_changes_colours():
    image = np.full((14, 14, 3), 100, np.uint8)
    mask = _left_right_mask()
    assert not np.array_equal(overlay_attention(image, mask, colormap=cv2.COLORMAP_HOT), overlay_attention(image, mask))


def test_grid_writes_png_with_cells_and_captions(tmp_path):
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(5)]
    images[4] = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)  # resized to the cell
    masks = [np.tanh(rng.normal(size=(7, 7))) for _ in range(5)]
    labels = ["anger", "disgust", "fear", "happiness", "a very long caption that must shrink"]
    path = tmp_path / "out" / "grid.png"
    grid = attention_grid(images, masks, labels, path, columns=3, spacing=2)
    written = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(written, grid)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    rows, width = 2, 3 * 32 + 4 * 2
    assert grid.shape[1] == width
    cell_height = (grid.shape[0] - 3 * 2) // rows
    assert cell_height > 32  # room for the caption
    # Each cell holds the overlay of its image, at its place in row-major order.
    for index in range(4):
        row, col = divmod(index, 3)
        top, left = 2 + row * (cell_height + 2), 2 + col * (32 + 2)
        cell = grid[top:top + 32, left:left + 32]
        np.testing.assert_array_equal(cell, overlay_attention(images[index], masks[index]))
        caption = grid[top + 32:top + cell_height, left:left + 32]
        assert caption.min() < 100 and caption.max() == 255  # dark text on white
    # The unused sixth cell stays blank.
    top, left = 2 + cell_height + 2, 2 + 2 * (32 + 2)
    assert grid[top:top + cell_height, left:left + 32].min() == 255


def test_grid_rejects_mismatched_lists():
    with pytest.raises(AttentionVizError, match="one entry each"):
        attention_grid([np.zeros((4, 4, 3), np.uint8)], [], ["x"])
    with pytest.raises(AttentionVizError, match="at least one"):
        attention_grid([], [], [])
