"""Prepared faces of one split, as training reads them."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import numpy as np


@dataclasses.dataclass
class FaceSet:
    """Prepared faces of one split: uint8 RGB ``(n, H, W, 3)``, integer labels, attributes."""

    images: np.ndarray
    labels: np.ndarray
    attributes: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.asarray(self.labels, np.int64).tobytes())
        return digest.hexdigest()[:16]
