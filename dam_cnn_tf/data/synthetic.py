"""A synthetic face dataset drawn with OpenCV, for the demo command and for tests.

Each face is drawn procedurally. Identity (face shape and size, skin and hair colour,
eye spacing, position, rotation, lighting, the binary ``gender`` attribute that changes hair
and jaw) varies per subject; the expression lives ONLY in the brows, eyes and mouth, and each
image records those pixels in ``Sample.extras["expression_mask"]`` so that an analysis can
measure how much of the SERD attention (paper §3.2, Eq. 1) falls on them. The binary
attribute plays the part of the gender labels of BAUM-2i in the paper's DAM-CNN-g (§4.3.2).

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from dam_cnn_tf.data.labels import CANONICAL_LABELS, SEVEN_CLASSES
from dam_cnn_tf.data.samples import Dataset, Sample

GENDERS = ("a", "b")
# Drawing happens on a canvas this many times larger than the output, then is area-downsampled,
# which anti-aliases thin strokes (brows, closed lips) at small output sizes.
_SUPERSAMPLE = 2
# cv2 drawing takes integer coordinates; this many fractional bits keeps sub-pixel positions.
_SHIFT = 4
_ONE = 1 << _SHIFT


class SyntheticDataError(ValueError):
    """Bad arguments to the synthetic-face generator or its folder writer."""


@dataclasses.dataclass(frozen=True)
class Expression:
    """Brow, eye and mouth configuration, in units of the face's half-width.

    ``brow_raise``: whole brow up (+) or down (-); ``brow_tilt``: inner end up (+) or down (-)
    relative to the outer end; ``eye_open``: eye height relative to a neutral eye;
    ``mouth_curve``: corners up (+, smile) or down (-); ``mouth_open``: gap between the lips;
    ``mouth_width``: relative to neutral; ``mouth_asym``: extra raise of the left corner only
    (contempt's one-sided smirk).
    """

    brow_raise: float = 0.0
    brow_tilt: float = 0.0
    eye_open: float = 1.0
    mouth_curve: float = 0.0
    mouth_open: float = 0.0
    mouth_width: float = 1.0
    mouth_asym: float = 0.0

    def towards(self, other: "Expression", amount: float) -> "Expression":
        """Linear interpolation from ``self`` (amount 0) to ``other`` (amount 1)."""
        fields = dataclasses.fields(self)
        return Expression(
            **{f.name: (1 - amount) * getattr(self, f.name) + amount * getattr(other, f.name) for f in fields}
        )


# One distinct configuration per canonical expression. Several share a feature value (anger and
# disgust both lower the brows, fear and surprise both widen the eyes) so that no single feature
# separates all classes: a classifier must combine brows, eyes and mouth.
EXPRESSIONS = {
    "neutral": Expression(),
    "anger": Expression(brow_raise=-0.10, brow_tilt=-0.14, eye_open=0.75, mouth_curve=-0.06, mouth_width=0.80),
    "contempt": Expression(brow_raise=0.0, brow_tilt=-0.03, eye_open=0.85, mouth_curve=0.0, mouth_asym=0.14),
    "disgust": Expression(brow_raise=-0.07, brow_tilt=-0.06, eye_open=0.55, mouth_curve=-0.12, mouth_open=0.08,
                          mouth_width=0.90),
    "fear": Expression(brow_raise=0.10, brow_tilt=0.10, eye_open=1.40, mouth_curve=-0.05, mouth_open=0.20,
                       mouth_width=1.20),
    "happiness": Expression(brow_raise=0.03, eye_open=0.70, mouth_curve=0.16, mouth_open=0.16, mouth_width=1.25),
    "sadness": Expression(brow_raise=0.0, brow_tilt=0.13, eye_open=0.80, mouth_curve=-0.16, mouth_width=0.95),
    "surprise": Expression(brow_raise=0.17, brow_tilt=0.0, eye_open=1.55, mouth_open=0.45, mouth_width=0.75),
}
assert set(EXPRESSIONS) == set(CANONICAL_LABELS)


@dataclasses.dataclass(frozen=True)
class Identity:
    """What stays fixed for one synthetic subject. Lengths are fractions of the canvas side."""

    gender: str
    face_center: tuple  # (x, y)
    face_half_width: float
    face_half_height: float
    skin: tuple  # RGB 0-255
    hair: tuple
    background: tuple
    eye_spacing: float  # half the distance between the eye centres, fraction of face half-width
    eye_size: float
    brow_thickness: float
    mouth_y: float  # below the face centre, fraction of face half-height
    rest_mouth_curve: float  # a personal resting expression, added to every expression
    rest_brow_raise: float
    rotation_deg: float
    offset: tuple  # (dx, dy) fraction of the canvas
    light_direction: float  # radians
    light_strength: float


def random_identity(rng: np.random.Generator, gender: str) -> Identity:
    """Draw one subject's appearance; ``gender`` "a" has long hair and a narrow jaw, "b" short hair."""
    if gender not in GENDERS:
        raise SyntheticDataError(f"gender must be one of {GENDERS}, got {gender!r}")
    skin_tones = np.array([[236, 200, 170], [222, 180, 140], [190, 140, 105], [150, 105, 75], [105, 72, 52]])
    hair_colours = np.array([[30, 22, 18], [70, 45, 25], [120, 85, 45], [200, 170, 110], [90, 90, 90]])
    skin = skin_tones[rng.integers(len(skin_tones))] + rng.normal(0, 8, 3)
    hair = hair_colours[rng.integers(len(hair_colours))] + rng.normal(0, 6, 3)
    background = rng.uniform(70, 200) + rng.normal(0, 20, 3)
    wide = gender == "b"
    return Identity(
        gender=gender,
        face_center=(0.5, 0.54),
        face_half_width=rng.uniform(0.27, 0.31) + (0.03 if wide else 0.0),
        face_half_height=rng.uniform(0.35, 0.39),
        skin=tuple(np.clip(skin, 0, 255)),
        hair=tuple(np.clip(hair, 0, 255)),
        background=tuple(np.clip(background, 0, 255)),
        eye_spacing=rng.uniform(0.34, 0.42),
        eye_size=rng.uniform(0.17, 0.21),
        brow_thickness=rng.uniform(0.040, 0.060) * (1.25 if wide else 1.0),
        mouth_y=rng.uniform(0.50, 0.58),
        rest_mouth_curve=rng.uniform(-0.03, 0.03),
        rest_brow_raise=rng.uniform(-0.03, 0.03),
        rotation_deg=rng.uniform(-6, 6),
        offset=(rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)),
        light_direction=rng.uniform(0, 2 * np.pi),
        light_strength=rng.uniform(0.0, 0.35),
    )


@dataclasses.dataclass(frozen=True)
class Jitter:
    """Per-image variation, so that two images of one subject and expression still differ."""

    intensity: float = 1.0  # how far from neutral towards the expression
    feature: tuple = (0.0, 0.0, 0.0)  # small extra brow raise, eye openness, mouth width
    rotation_deg: float = 0.0
    offset: tuple = (0.0, 0.0)
    brightness: float = 1.0
    noise_sigma: float = 0.0
    noise_seed: int = 0

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Jitter":
        """Expression strength, feature shape, exposure and noise vary per image; pose varies per
        subject only (as in posed datasets like CK+), so that outside the expression mask two
        images of one subject differ by no more than lighting and noise."""
        return cls(
            intensity=rng.uniform(0.65, 1.0),
            feature=(rng.normal(0, 0.015), rng.normal(0, 0.06), rng.normal(0, 0.04)),
            brightness=rng.uniform(0.96, 1.04),
            noise_sigma=rng.uniform(1.5, 3.5),
            noise_seed=int(rng.integers(2**31)),
        )


def _fx(points) -> np.ndarray:
    """Float pixel coordinates to cv2's fixed-point integers (see ``_SHIFT``)."""
    return np.round(np.asarray(points, np.float64) * _ONE).astype(np.int32)


def _ellipse(img, center, axes, color, thickness=-1, angle=0.0, start=0, end=360):
    c, a = _fx(center), _fx(np.maximum(axes, 0.5 / _ONE))
    cv2.ellipse(img, (int(c[0]), int(c[1])), (int(a[0]), int(a[1])), angle, start, end, color, thickness,
                cv2.LINE_AA, _SHIFT)


def _poly(img, points, color, thickness, closed=False):
    cv2.polylines(img, [_fx(points).reshape(-1, 1, 2)], closed, color, max(1, int(round(thickness))), cv2.LINE_AA,
                  _SHIFT)


def _fill(img, points, color):
    cv2.fillPoly(img, [_fx(points).reshape(-1, 1, 2)], color, cv2.LINE_AA, _SHIFT)


def _mouth_curves(ident: Identity, expr: Expression, size: float):
    """Upper and lower lip curves (each (k, 2)) from the corner positions and the opening."""
    cx, cy = ident.face_center[0] * size, ident.face_center[1] * size
    fw = ident.face_half_width * size
    my = cy + ident.mouth_y * ident.face_half_height * size
    half = 0.42 * fw * expr.mouth_width
    curve = (expr.mouth_curve + ident.rest_mouth_curve) * fw
    left_y = my - curve - expr.mouth_asym * fw  # image left = the subject's right corner
    right_y = my - curve
    xs = np.linspace(-1.0, 1.0, 17)
    corners = left_y + (right_y - left_y) * (xs + 1) / 2
    bulge = 1 - xs**2
    gap = expr.mouth_open * fw
    # A smile pulls the corners up and the lower lip down into a U; the opening splits the lips.
    upper = corners + bulge * (my - corners - 0.5 * gap - 0.15 * max(curve, 0.0))
    lower = corners + bulge * (my - corners + 0.5 * gap + 0.1 * max(curve, 0.0))
    x = cx + half * xs
    return np.stack([x, upper], 1), np.stack([x, lower], 1)


def _draw_features(img, mask, ident: Identity, expr: Expression, size: float, pad: float):
    """Brows, eyes and mouth on ``img``; the same strokes, ``pad`` pixels thicker, on ``mask``."""
    cx, cy = ident.face_center[0] * size, ident.face_center[1] * size
    fw, fh = ident.face_half_width * size, ident.face_half_height * size
    eye_y = cy - 0.14 * fh
    eye_dx = ident.eye_spacing * fw
    eye_w = ident.eye_size * fw * 1.2
    eye_h = ident.eye_size * fw * 0.65 * expr.eye_open
    iris_r = ident.eye_size * fw * 0.5
    brow_gap = 0.30 * fw
    thick = ident.brow_thickness * size
    raise_ = (expr.brow_raise + ident.rest_brow_raise) * fw
    tilt = expr.brow_tilt * fw
    dark = (25, 20, 20)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        # Eye: white, iris clipped to the opening, then the lid outline.
        eye = np.zeros_like(img)
        _ellipse(eye, (ex, eye_y), (eye_w, eye_h), (255, 255, 255))
        eye_img = img.copy()
        _ellipse(eye_img, (ex, eye_y), (eye_w, eye_h), (240, 240, 235))
        _ellipse(eye_img, (ex, eye_y), (iris_r, iris_r), (60, 45, 35))
        _ellipse(eye_img, (ex, eye_y), (iris_r * 0.45, iris_r * 0.45), (10, 10, 10))
        alpha = eye[..., :1].astype(np.float32) / 255.0
        img[:] = (eye_img * alpha + img * (1 - alpha)).astype(img.dtype)
        _ellipse(img, (ex, eye_y), (eye_w, eye_h), dark, thickness=max(1, int(0.012 * size)))
        _ellipse(mask, (ex, eye_y), (eye_w + pad, eye_h + pad), 255)
        # Brow: inner end near the nose, outer end above the eye's outer corner, slightly arched.
        inner = np.array([cx + side * (eye_dx - 0.9 * eye_w), eye_y - brow_gap - raise_ - tilt])
        outer = np.array([cx + side * (eye_dx + 0.9 * eye_w), eye_y - brow_gap - raise_ + 0.03 * fw])
        mid = (inner + outer) / 2 + np.array([0, -0.06 * fw])
        t = np.linspace(0, 1, 9)[:, None]
        brow = (1 - t) ** 2 * inner + 2 * t * (1 - t) * mid + t**2 * outer
        _poly(img, brow, ident.hair, thick)
        _poly(mask, brow, 255, thick + 2 * pad)
    upper, lower = _mouth_curves(ident, expr, size)
    lip = tuple(np.clip(np.array(ident.skin) * np.array([0.85, 0.55, 0.55]), 0, 255))
    lip_thick = 0.035 * size
    if expr.mouth_open > 0.01:
        _fill(img, np.concatenate([upper, lower[::-1]]), (70, 20, 25))
        if expr.mouth_curve > 0.05:  # a smile shows the upper teeth
            teeth_low = upper + np.array([0, 0.35]) * (lower - upper)
            _fill(img, np.concatenate([upper, teeth_low[::-1]]), (245, 245, 240))
    _poly(img, upper, lip, lip_thick)
    _poly(img, lower, lip, lip_thick)
    _fill(mask, np.concatenate([upper, lower[::-1]]), 255)
    _poly(mask, upper, 255, lip_thick + 2 * pad)
    _poly(mask, lower, 255, lip_thick + 2 * pad)


def render_face(
    identity: Identity,
    expression: Expression,
    image_size: int = 64,
    jitter: Optional[Jitter] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one face. Returns ``(image uint8 (S,S,3) RGB, expression_mask bool (S,S), face_mask bool (S,S))``.

    ``jitter`` None draws the face exactly as ``identity`` and ``expression`` say (no noise):
    two such faces that differ only in expression differ only inside their expression masks.
    """
    if image_size < 16:
        raise SyntheticDataError(f"image_size must be at least 16, got {image_size}")
    jitter = jitter or Jitter()
    expr = EXPRESSIONS["neutral"].towards(expression, jitter.intensity)
    expr = dataclasses.replace(
        expr,
        brow_raise=expr.brow_raise + jitter.feature[0],
        eye_open=max(0.2, expr.eye_open + jitter.feature[1]),
        mouth_width=expr.mouth_width + jitter.feature[2],
    )
    size = image_size * _SUPERSAMPLE
    ident = identity
    cx, cy = ident.face_center[0] * size, ident.face_center[1] * size
    fw, fh = ident.face_half_width * size, ident.face_half_height * size
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.array(ident.background, np.uint8)
    # Hair behind the head: long for "a" (down past the jaw), a short cap for "b".
    if ident.gender == "a":
        _ellipse(img, (cx, cy - 0.05 * fh), (fw * 1.22, fh * 1.08), ident.hair)
        _fill(img, [(cx - fw * 1.22, cy), (cx + fw * 1.22, cy), (cx + fw * 1.15, cy + fh * 1.1),
                    (cx - fw * 1.15, cy + fh * 1.1)], ident.hair)
    else:
        _ellipse(img, (cx, cy - 0.18 * fh), (fw * 1.08, fh * 0.92), ident.hair)
    neck = tuple(np.array(ident.skin) * 0.85)
    _fill(img, [(cx - 0.45 * fw, cy + 0.6 * fh), (cx + 0.45 * fw, cy + 0.6 * fh), (cx + 0.5 * fw, size),
                (cx - 0.5 * fw, size)], neck)
    for side in (-1, 1):
        _ellipse(img, (cx + side * fw * 0.98, cy - 0.05 * fh), (0.14 * fw, 0.22 * fh), neck)
    face = np.zeros((size, size), np.uint8)
    if ident.gender == "a":  # narrower, pointed jaw
        _ellipse(face, (cx, cy), (fw, fh), 255)
    else:  # wider, squarer jaw: an ellipse on top of a rounded box
        _ellipse(face, (cx, cy - 0.1 * fh), (fw, fh * 0.9), 255)
        _ellipse(face, (cx, cy + 0.35 * fh), (fw * 0.92, fh * 0.65), 255)
    img[face > 127] = np.array(ident.skin, np.uint8)
    # Fringe over the top of the forehead, well above the highest brow.
    _ellipse(img, (cx, cy - 0.86 * fh), (fw * 0.95, fh * 0.3), ident.hair, start=180, end=360)
    _fill(img, [(cx - fw * 0.95, cy - 0.86 * fh), (cx + fw * 0.95, cy - 0.86 * fh),
                (cx + fw * 0.8, cy - 0.74 * fh), (cx - fw * 0.8, cy - 0.74 * fh)], ident.hair)
    # Nose: identity only.
    nose = tuple(np.array(ident.skin) * 0.75)
    _poly(img, [(cx, cy - 0.1 * fh), (cx - 0.06 * fw, cy + 0.2 * fh), (cx + 0.05 * fw, cy + 0.23 * fh)], nose,
          0.018 * size)
    mask = np.zeros((size, size), np.uint8)
    _draw_features(img, mask, ident, expr, size, pad=0.012 * size)

    # Lighting: a linear gradient across the face, then the per-image exposure.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    gradient = 1 + ident.light_strength * (np.cos(ident.light_direction) * xx + np.sin(ident.light_direction) * yy)
    out = img.astype(np.float32) * (gradient * jitter.brightness)[..., None]

    # Pose: rotation about the face centre and a shift, the same for the image and both masks.
    angle = ident.rotation_deg + jitter.rotation_deg
    warp = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    warp[:, 2] += (np.array(ident.offset) + np.array(jitter.offset)) * size
    out = cv2.warpAffine(out, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    masks = cv2.warpAffine(np.stack([mask, face], -1), warp, (size, size), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    out = cv2.resize(out, (image_size, image_size), interpolation=cv2.INTER_AREA)
    masks = cv2.resize(masks.astype(np.float32), (image_size, image_size), interpolation=cv2.INTER_AREA)
    if jitter.noise_sigma > 0:
        out += np.random.default_rng(jitter.noise_seed).normal(0, jitter.noise_sigma, out.shape).astype(np.float32)
    image = np.clip(np.round(out), 0, 255).astype(np.uint8)
    # Any output pixel the (padded) strokes touch.
    expression_mask = masks[..., 0] > 0
    face_mask = masks[..., 1] > 127
    return image, expression_mask, face_mask


def make_synthetic_faces(
    num_subjects: int = 12,
    images_per_class: int = 6,
    image_size: int = 64,
    classes: Sequence[str] = SEVEN_CLASSES,
    seed: int = 0,
) -> Dataset:
    """A balanced synthetic FER dataset: every subject shows every class ``images_per_class`` times.

    Subjects are ``syn000``, ``syn001``, …; their ``gender`` attribute ("a" or "b") alternates
    over a seeded shuffle, so both values are present whenever there are two subjects. Each
    sample carries ``image`` (uint8 RGB), ``extras["expression_mask"]`` (bool, the brow, eye
    and mouth pixels) and ``extras["face_mask"]`` (bool, the face outline, forehead fringe included).
    """
    unknown = [c for c in classes if c not in EXPRESSIONS]
    if unknown:
        raise SyntheticDataError(f"synthetic faces support {CANONICAL_LABELS}, not {unknown}")
    if len(set(classes)) != len(classes) or not classes:
        raise SyntheticDataError(f"classes must be distinct and non-empty, got {tuple(classes)}")
    if num_subjects < 1 or images_per_class < 1:
        raise SyntheticDataError(
            f"num_subjects and images_per_class must be positive, got {num_subjects} and {images_per_class}"
        )
    rng = np.random.default_rng(seed)
    genders = [GENDERS[i % 2] for i in rng.permutation(num_subjects)]
    samples = []
    for s in range(num_subjects):
        # One generator per subject, spawned from the seed, so adding subjects keeps the earlier ones.
        srng = np.random.default_rng([seed, s])
        ident = random_identity(srng, genders[s])
        subject = f"syn{s:03d}"
        for label in classes:
            for _ in range(images_per_class):
                image, expression_mask, face_mask = render_face(
                    ident, EXPRESSIONS[label], image_size, Jitter.random(srng)
                )
                samples.append(
                    Sample(
                        path=None,
                        label=label,
                        subject=subject,
                        attributes={"gender": ident.gender},
                        image=image,
                        extras={"expression_mask": expression_mask, "face_mask": face_mask},
                    )
                )
    return Dataset("synthetic", samples, tuple(classes))


def synthetic_dataset_to_folder(dataset: Dataset, root) -> Path:
    """Write ``dataset`` as ``root/<label>/<subject>_<label>_<k>.png`` plus ``root/index.csv``.

    ``index.csv`` has the columns ``path,label,subject,gender`` with paths relative to ``root``,
    the layout the folder loaders read. The folder is built under a temporary name beside
    ``root`` and renamed at the end, so a failure leaves no partial dataset. ``root`` must not
    exist or be an empty folder. Returns ``root``.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SyntheticDataError(f"{root}: already exists and is not an empty folder")
    missing = [i for i, s in enumerate(dataset.samples) if s.image is None]
    if missing:
        raise SyntheticDataError(f"sample {missing[0]} of {dataset.name!r} has no image to write")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rows = []
        counts: dict = {}
        for sample in dataset.samples:
            key = (sample.subject or "unknown", sample.label)
            k = counts[key] = counts.get(key, -1) + 1
            rel = f"{sample.label}/{key[0]}_{sample.label}_{k:03d}.png"
            (tmp / sample.label).mkdir(exist_ok=True)
            # OpenCV writes BGR.
            if not cv2.imwrite(str(tmp / rel), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)):
                raise SyntheticDataError(f"{root / rel}: could not write image")
            rows.append((rel, sample.label, sample.subject or "", sample.attributes.get("gender", "")))
        with open(tmp / "index.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("path", "label", "subject", "gender"))
            writer.writerows(rows)
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
