"""JAFFE augmentation as §4.1.1: mirror, rotations by ±5°, additive Gaussian noise.

Each original yields five images (original, mirror, +5°, -5°, noisy), so JAFFE's 213
images become the paper's 1065. Augment training folds only: augmenting before the split
puts transformed copies of a test image into training.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np

from dam_cnn_tf.data.samples import Dataset

AUGMENTATIONS = ("original", "mirror", "rotate+5", "rotate-5", "noise")
ROTATION_DEGREES = 5.0
NOISE_VARIANCE = 0.01  # on images scaled to [0, 1] (§4.1.1)


def mirror(image: np.ndarray) -> np.ndarray:
    """Left-right flip."""
    return np.ascontiguousarray(image[:, ::-1])


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre by ``degrees`` (positive = counter-clockwise), same size,
    bilinear, borders reflected so no black corners enter the face."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def add_gaussian_noise(image: np.ndarray, rng: np.random.Generator, variance: float = NOISE_VARIANCE) -> np.ndarray:
    """Add zero-mean Gaussian noise of ``variance`` to the image scaled to [0, 1]; clip, back to uint8."""
    scaled = image.astype(np.float64) / 255.0
    noisy = np.clip(scaled + rng.normal(0.0, np.sqrt(variance), size=image.shape), 0.0, 1.0)
    return np.rint(noisy * 255.0).astype(np.uint8)


@dataclasses.dataclass
class AugmentedImages:
    """``images`` (uint8 ``5N,H,W,C``), ``source`` index of the original each comes from,
    ``kind`` its transformation name (``AUGMENTATIONS``)."""

    images: np.ndarray
    source: np.ndarray
    kind: np.ndarray


def augment_images(images: np.ndarray, seed: int) -> AugmentedImages:
    """The five §4.1.1 variants of each ``uint8`` image in ``images`` (``N,H,W[,C]``), grouped
    per original in ``AUGMENTATIONS`` order; the noise is drawn from ``seed``."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"augment_images expects uint8 images, got {images.dtype}")
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        out.extend([image, mirror(image), rotate(image, ROTATION_DEGREES), rotate(image, -ROTATION_DEGREES),
                    add_gaussian_noise(image, rng)])
    count = len(AUGMENTATIONS)
    return AugmentedImages(
        images=np.stack(out).reshape(len(images) * count, *images.shape[1:]) if out else images[:0],
        source=np.repeat(np.arange(len(images)), count),
        kind=np.tile(np.array(AUGMENTATIONS), len(images)),
    )


def augment_dataset(dataset: Dataset, seed: int, name: Optional[str] = None) -> Dataset:
    """The augmented copy of a ``Dataset`` whose samples hold their pixels in ``Sample.image``
    (e.g. prepared faces). Each new sample keeps label, subject, split and attributes, and
    records ``extras["augmentation"]`` and ``extras["source"]`` (the original's path)."""
    if any(s.image is None for s in dataset.samples):
        raise ValueError("augment_dataset needs in-memory images (Sample.image); prepare faces first")
    if not dataset.samples:
        return Dataset(name or dataset.name, [], dataset.classes)
    augmented = augment_images(np.stack([s.image for s in dataset.samples]), seed)
    samples = []
    for image, source, kind in zip(augmented.images, augmented.source, augmented.kind):
        original = dataset.samples[source]
        samples.append(dataclasses.replace(
            original, image=image, path=original.path if kind == "original" else f"{original.path}#{kind}",
            attributes=dict(original.attributes),
            extras={**original.extras, "augmentation": str(kind), "source": original.path},
        ))
    return Dataset(name or f"{dataset.name}-augmented", samples, dataset.classes)
