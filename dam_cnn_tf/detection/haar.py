"""The paper's Viola-Jones detector (§4.1.1) as prediction uses it, with a minimum face in pixels."""

from __future__ import annotations

from typing import Optional

import numpy as np

from dam_cnn_tf.data.faces import HaarFaceDetector


class HaarRGBDetector(HaarFaceDetector):
    """``HaarFaceDetector`` (which takes RGB or grey ``uint8`` images). ``min_face``: the smallest
    face side looked for, in pixels (by default 10 % of the image's shorter side, as training's
    face preparation uses it); never under the cascade's 24 pixels."""

    name = "haar"

    def __init__(self, min_face: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        if min_face is not None and (not np.isfinite(min_face) or min_face < 1):
            raise ValueError(f"min_face must be a number of pixels >= 1, got {min_face!r}")
        self.min_face = None if min_face is None else float(min_face)

    def config(self) -> dict:
        return {**super().config(), "detector": self.name, "min_face": self.min_face}

    def min_face_side(self, height: int, width: int) -> int:
        if self.min_face is None:
            return super().min_face_side(height, width)
        return max(24, int(round(self.min_face)))
