"""Face detection on composed photos of real faces: every detector's rate, false detections and time.

    python -m benchmarks.detection --data <shared data folder> [--out benchmarks/results/...json]

Test photos are built from real faces (nothing is saved but the figures): Yale's
head-and-shoulders photos (320x243 grey, pasted whole) and RAF-DB's aligned colour faces
(100x100, with their own border smeared and blurred outward as context, so the detector sees
a face in surroundings rather than a square cut-out). They are pasted, with feathered edges,
onto synthetic cluttered backgrounds (smooth colour fields, noise, random shapes) at known
sizes and angles. A face's true box is RAF-DB's crop, or for Yale the mean of the Haar and
BlazeFace boxes on the original photo (both find all 89, at IoU 0.61 to 0.87 from each other). A face counts
as found when a detected box overlaps it with IoU >= 0.4 (greedy one-to-one matching); every
other box is a false detection. Scenarios:

* ``group_1080p``: 1920x1080, six faces of 70-80 px (the reported group photo);
* ``sizes_1080p``: 1920x1080, faces of 40 to 600 px, rate per size;
* ``rotated_1080p``: faces of 100-160 px turned in-plane by 0 to 45 degrees, rate per angle;
* ``photo_12mp``: 4000x3000, one face of 220-240 px (the reported 12 MP photo);
* ``whole_frame``: the face photo alone (Yale 320x243, RAF-DB 100x100 with no context);
* ``no_face``: 1920x1080 backgrounds without faces (false detections only).

Time per photo is the median over interleaved calls on 1920x1080 and 4000x3000 canvases.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import cpu_name

IOU_FOUND = 0.4
SEED = 20240607
SIZES = (40, 60, 80, 120, 200, 320, 450, 600)  # face sides of sizes_1080p, each drawn within +-5 %
ANGLES = (0, 15, 30, 45)


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# -- faces ---------------------------------------------------------------------------------

class Face:
    """A pasteable face: ``image`` RGB, ``alpha`` float mask, ``box`` the true face box
    ``xmin, ymin, xmax, ymax`` inside ``image``, ``source`` ``"yale"`` or ``"rafdb"``."""

    def __init__(self, image, alpha, box, source, name):
        self.image, self.alpha, self.box, self.source, self.name = image, alpha, np.asarray(box, float), source, name

    @property
    def side(self) -> float:
        return float(np.mean(self.box[2:] - self.box[:2]))


def feather(height: int, width: int, border: float) -> np.ndarray:
    alpha = np.zeros((height, width), np.float32)
    b = max(1, int(border))
    alpha[b:-b, b:-b] = 1.0
    return cv2.GaussianBlur(alpha, (0, 0), max(0.5, border / 2))


def rafdb_face(rgb: np.ndarray, name: str) -> Face:
    """The aligned crop in the middle of its own border, replicated and blurred outward."""
    n = rgb.shape[0]
    pad = int(0.45 * n)
    grown = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    blurred = cv2.GaussianBlur(grown, (0, 0), 0.08 * n)
    inside = np.zeros(grown.shape[:2], np.float32)
    inside[pad:pad + n, pad:pad + n] = 1.0
    inside = cv2.GaussianBlur(inside, (0, 0), 0.05 * n)[..., None]
    image = (grown * inside + blurred * (1 - inside)).astype(np.uint8)
    return Face(image, feather(*image.shape[:2], 0.12 * n), (pad, pad, pad + n, pad + n), "rafdb", name)


def yale_face(rgb: np.ndarray, box, name: str) -> Face:
    return Face(rgb, feather(*rgb.shape[:2], 4), box, "yale", name)


def yale_truth(rgb: np.ndarray, haar, blaze) -> np.ndarray:
    """The mean of the Haar and BlazeFace boxes (largest each) on the original photo."""
    boxes = []
    for found in (haar(rgb), blaze(rgb)):
        if len(found):
            x, y, w, h = found[int(np.argmax(found[:, 2] * found[:, 3]))]
            boxes.append((x, y, x + w, y + h))
    return np.mean(boxes, axis=0) if boxes else None


def load_faces(data: Path, num_rafdb: int, rng, haar, blaze) -> list:
    faces = []
    for path in sorted((data / "yalefaces_expr").glob("*/*.gif")):
        rgb = read_rgb(path)
        box = yale_truth(rgb, haar, blaze)
        if box is not None:
            faces.append(yale_face(rgb, box, path.name))
    rafdb = sorted((data / "rafdb" / "train").glob("*/*.jpg"))
    for index in rng.choice(len(rafdb), size=min(num_rafdb, len(rafdb)), replace=False):
        faces.append(rafdb_face(read_rgb(rafdb[index]), rafdb[index].name))
    return faces


# -- canvases ------------------------------------------------------------------------------

def background(height: int, width: int, rng) -> np.ndarray:
    """Smooth colour fields, fine noise and random shapes: clutter, not faces."""
    small = rng.uniform(0, 255, (max(2, height // 120), max(2, width // 120), 3)).astype(np.float32)
    canvas = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas += rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    scale = min(height, width)
    for _ in range(int(rng.integers(15, 40))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = int(rng.uniform(0.01, 0.15) * scale)
        if rng.random() < 0.5:
            cv2.rectangle(canvas, centre, (centre[0] + size, centre[1] + int(size * rng.uniform(0.3, 2))),
                          colour, -1 if rng.random() < 0.6 else max(1, size // 20))
        else:
            cv2.ellipse(canvas, centre, (size, int(size * rng.uniform(0.3, 1.0))), float(rng.uniform(0, 180)),
                        0, 360, colour, -1 if rng.random() < 0.6 else max(1, size // 20))
    return cv2.GaussianBlur(canvas, (0, 0), 0.7)


def paste(canvas: np.ndarray, face: Face, side: float, angle: float, centre) -> np.ndarray:
    """Paste ``face`` so its true box has ``side`` pixels and is centred at ``centre``, turned
    in-plane by ``angle`` degrees; returns the true box in the canvas (upright, same side)."""
    scale = side / face.side
    face_centre = (face.box[:2] + face.box[2:]) / 2
    matrix = cv2.getRotationMatrix2D((float(face_centre[0]), float(face_centre[1])), angle, scale)
    matrix[:, 2] += np.asarray(centre, float) - face_centre
    height, width = canvas.shape[:2]
    grey = face.image if face.image.ndim == 3 else cv2.cvtColor(face.image, cv2.COLOR_GRAY2RGB)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(grey, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(face.alpha, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    canvas[:] = (warped * alpha + canvas * (1 - alpha)).astype(np.uint8)
    half = side / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def footprint(face: Face, side: float) -> float:
    """Half the diagonal of the pasted photo, for placing faces apart."""
    scale = side / face.side
    return 0.5 * scale * math.hypot(*face.image.shape[:2])


def compose(height, width, items, rng, tries: int = 300):
    """A canvas with ``items`` ``(face, side, angle)`` placed so that their photos do not
    overlap; returns ``(canvas, truths, placed items)`` (items that did not fit are left out)."""
    canvas = background(height, width, rng)
    taken, truths, placed = [], [], []
    for face, side, angle in items:
        radius = footprint(face, side)
        half = side / 2
        for _ in range(tries):
            centre = np.array([rng.uniform(half, width - half), rng.uniform(half, height - half)])
            if all(np.hypot(*(centre - c)) > 0.8 * (radius + r) for c, r in taken):
                break
        else:
            continue
        taken.append((centre, radius))
        truths.append(paste(canvas, face, side, angle, centre))
        placed.append((face, side, angle))
    return canvas, truths, placed


# -- scoring -------------------------------------------------------------------------------

def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(axis=1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def match(truths, detected_xywh) -> tuple:
    """``(found per truth, number of false detections)`` with greedy one-to-one IoU matching."""
    boxes = np.asarray(detected_xywh, float).reshape(-1, 4)
    boxes = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    found = [False] * len(truths)
    if not len(truths) or not len(boxes):
        return found, len(boxes)
    ious = iou_matrix(np.asarray(truths), boxes)
    used = set()
    for flat in np.argsort(-ious, axis=None):
        t, d = np.unravel_index(flat, ious.shape)
        if ious[t, d] < IOU_FOUND:
            break
        if found[t] or d in used:
            continue
        found[t], _ = True, used.add(d)
    return found, len(boxes) - len(used)


# -- scenarios -----------------------------------------------------------------------------

def scenarios(faces, rng, counts) -> dict:
    """``{name: [(canvas, truths, [(source, side, angle)])]}``."""
    pick = lambda: faces[int(rng.integers(len(faces)))]
    out = {}
    out["group_1080p"] = [compose(1080, 1920, [(pick(), rng.uniform(70, 80), 0.0) for _ in range(6)], rng)
                          for _ in range(counts["group"])]
    out["sizes_1080p"] = []
    for _ in range(counts["sizes"]):
        chosen = list(rng.permutation(SIZES))
        items = []
        for side in chosen:  # what fits: small faces many, the 600 px one alone with a few small
            items.append((pick(), float(side) * rng.uniform(0.95, 1.05), 0.0))
        out["sizes_1080p"].append(compose(1080, 1920, sorted(items, key=lambda i: -i[1]), rng))
    out["rotated_1080p"] = [compose(1080, 1920, [(pick(), rng.uniform(100, 160), float(a) * rng.choice([-1, 1]))
                                                 for a in ANGLES for _ in range(2)], rng)
                            for _ in range(counts["rotated"])]
    out["photo_12mp"] = [compose(3000, 4000, [(pick(), rng.uniform(220, 240), 0.0)], rng)
                         for _ in range(counts["photo_12mp"])]
    whole = []
    for face in faces[:: max(1, len(faces) // counts["whole"])]:
        if face.source == "yale":
            whole.append((face.image.copy(), [face.box], [(face, face.side, 0.0)]))
        else:
            x0, y0, x1, y1 = face.box.astype(int)
            crop = np.ascontiguousarray(face.image[y0:y1, x0:x1])
            whole.append((crop, [np.array([0, 0, x1 - x0, y1 - y0], float)], [(face, face.side, 0.0)]))
    out["whole_frame"] = whole
    out["no_face"] = [(background(1080, 1920, rng), [], []) for _ in range(counts["no_face"])]
    return out


def bucket(scenario: str, face, side, angle) -> str:
    if scenario == "sizes_1080p":
        return f"{min(SIZES, key=lambda s: abs(s - side))}px"
    if scenario == "rotated_1080p":
        return f"{int(round(abs(angle)))}deg"
    return "all"


def evaluate(detectors: dict, cases: dict) -> dict:
    results = {}
    for name, detect in detectors.items():
        per = {}
        for scenario, photos in cases.items():
            table = {}
            false = 0
            for canvas, truths, placed in photos:
                found, fp = match(truths, detect(canvas))
                false += fp
                for ok, (face, side, angle) in zip(found, placed):
                    for key in (f"{face.source}/{bucket(scenario, face, side, angle)}",
                                f"all/{bucket(scenario, face, side, angle)}"):
                        cell = table.setdefault(key, [0, 0])
                        cell[0] += int(ok)
                        cell[1] += 1
            per[scenario] = {"found": {k: {"found": v[0], "faces": v[1], "rate": v[0] / v[1]}
                                       for k, v in sorted(table.items())},
                             "photos": len(photos), "false_detections": false,
                             "false_per_photo": false / max(1, len(photos))}
        results[name] = per
        print(name, {s: (sum(v["found"] for k, v in r["found"].items() if k.startswith("all/")),
                         sum(v["faces"] for k, v in r["found"].items() if k.startswith("all/")), r["false_per_photo"])
                     for s, r in per.items()}, flush=True)
    return results


def time_detectors(detectors: dict, photos: dict, rounds: int) -> dict:
    """Median seconds per photo, calls interleaved across detectors (one warm-up each)."""
    out = {}
    for label, image in photos.items():
        samples = {name: [] for name in detectors}
        for detect in detectors.values():
            detect(image)
        for _ in range(rounds):
            for name, detect in detectors.items():
                start = time.perf_counter()
                detect(image)
                samples[name].append(time.perf_counter() - start)
        out[label] = {name: {"median_s": statistics.median(s), "min_s": min(s), "rounds": len(s)}
                      for name, s in samples.items()}
        print(label, {n: round(v["median_s"], 3) for n, v in out[label].items()}, flush=True)
    return out


def single_view_sweep(faces, rng, fractions=(0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9)) -> dict:
    """The network alone on one 128x128 view: the rate at which a face whose side is each
    fraction of the view is found (what sets the pyramid's levels)."""
    from dam_cnn_tf.detection.blazeface import INPUT_SIZE, BlazeFaceNet, to_input, weighted_nms

    net, out = BlazeFaceNet(), {}
    for fraction in fractions:
        side, table = fraction * INPUT_SIZE, {}
        for face in faces:
            canvas = background(INPUT_SIZE, INPUT_SIZE, rng)
            half = side / 2
            centre = rng.uniform(half, INPUT_SIZE - half, 2)
            truth = paste(canvas, face, side, 0.0, centre)
            (points, scores), = net.candidates(to_input(canvas[None]), 0.5)
            points, _ = weighted_nms(points, scores, 0.5)
            boxes = points[:, :2].reshape(-1, 4)
            found, _ = match([truth], np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1))
            cell = table.setdefault(face.source, [0, 0])
            cell[0] += int(found[0])
            cell[1] += 1
        out[f"{int(round(side))}px"] = {k: {"found": v[0], "faces": v[1], "rate": v[0] / v[1]}
                                        for k, v in table.items()}
        print("single view", f"{int(round(side))}px", {k: f"{v[0]}/{v[1]}" for k, v in table.items()}, flush=True)
    return out


def build_detectors(which) -> dict:
    from dam_cnn_tf.detection import detector

    available = {
        "blazeface": lambda: detector("blazeface"),
        "blazeface-opencv": lambda: detector("blazeface", runtime="opencv"),
        "haar": lambda: detector("haar"),
        "haar-min40": lambda: detector("haar", min_face=40),
    }
    built = {}
    for name in which:
        if name.startswith("blazeface@"):  # another score threshold, e.g. blazeface@0.5
            built[name] = detector("blazeface", min_score=float(name.split("@", 1)[1]))
        else:
            built[name] = available[name]()
    return built


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding yalefaces_expr/ and rafdb/train/")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the raw results")
    parser.add_argument("--detectors", default="blazeface,haar,haar-min40",
                        help="comma-separated, of blazeface, blazeface-opencv, haar, haar-min40, blazeface@SCORE")
    parser.add_argument("--timed", default="blazeface,blazeface-opencv,haar,haar-min40")
    parser.add_argument("--rafdb", type=int, default=300, help="RAF-DB faces drawn")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the number of photos per scenario")
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per detector and photo size")
    parser.add_argument("--seed", type=int, default=SEED, help="another seed draws other faces and photos "
                        "(the default score threshold was chosen on --seed 777, apart from the reported draw)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    reference = build_detectors(["haar", "blazeface"])
    faces = load_faces(args.data, args.rafdb, rng, reference["haar"], reference["blazeface"])
    counts = {k: max(1, int(round(v * args.scale))) for k, v in
              {"group": 20, "sizes": 20, "rotated": 15, "photo_12mp": 10, "whole": 60, "no_face": 20}.items()}
    sweep = single_view_sweep(faces[::4], np.random.default_rng(args.seed + 1))
    cases = scenarios(faces, rng, counts)
    detectors = build_detectors([d for d in args.detectors.split(",") if d])
    results = evaluate(detectors, cases)
    timed = build_detectors([d for d in args.timed.split(",") if d])
    timing_photos = {"1920x1080": cases["group_1080p"][0][0], "4000x3000": cases["photo_12mp"][0][0]}
    timing = time_detectors(timed, timing_photos, args.rounds) if timed else {}
    report = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "iou_found": IOU_FOUND, "seed": args.seed,
        "faces": {"yale": sum(f.source == "yale" for f in faces), "rafdb": sum(f.source == "rafdb" for f in faces)},
        "photos": {k: len(v) for k, v in cases.items()},
        "detectors": {name: getattr(d, "config", lambda: {})() for name, d in detectors.items()},
        "runtime": getattr(getattr(detectors.get("blazeface"), "net", None), "runtime", None),
        "single_view_sweep": sweep, "results": results, "seconds_per_photo": timing,
    }
    text = json.dumps(report, indent=1, default=float)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
