"""face-api's input preparation (padToSquare, resizeBilinear) in plain NumPy, for the tests."""

import numpy as np


def _js_round_half(diff):
    return int(np.floor(diff * 0.5 + 0.5))  # Math.round(diff * 0.5)


def numpy_pad_to_square(image):
    h, w = image.shape[:2]
    diff = abs(h - w)
    after = _js_round_half(diff)
    before = diff - after
    if h < w:
        return np.pad(image, ((before, after), (0, 0), (0, 0)))
    return np.pad(image, ((0, 0), (before, after), (0, 0)))


def numpy_resize_bilinear(image, size):
    """tf.image.resizeBilinear with align_corners=False, half_pixel_centers=False."""
    h, w = image.shape[:2]
    out = np.zeros((size, size, image.shape[2]), np.float64)
    for i in range(size):
        y = i * h / size
        y0 = int(np.floor(y)); y1 = min(y0 + 1, h - 1); dy = y - y0
        for j in range(size):
            x = j * w / size
            x0 = int(np.floor(x)); x1 = min(x0 + 1, w - 1); dx = x - x0
            top = image[y0, x0] * (1 - dx) + image[y0, x1] * dx
            bottom = image[y1, x0] * (1 - dx) + image[y1, x1] * dx
            out[i, j] = top * (1 - dy) + bottom * dy
    return out
