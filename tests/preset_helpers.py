"""Tiny presets for tests: a folder as ``scripts/build_preset.py`` writes one, from a tiny model,
and a way to point preset lookup at a folder of them."""

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np

TINY_CLASSES = ("anger", "happiness", "surprise")
TINY_SIZE = 32


def tiny_dam_cnn(size=TINY_SIZE, classes=TINY_CLASSES, seed=0):
    """An untrained DAM-CNN whose outputs still differ from face to face."""
    from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd, salient_feature_model

    vgg_serd = build_vgg_serd(len(classes), input_shape=(size, size, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    vgg_serd.get_layer("serd").weights[1].assign(np.full((1,), 0.5, np.float32))  # M > 0 (Eq. 1-2)
    faces = np.random.default_rng(seed).uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    features = salient_feature_model(vgg_serd).predict(faces, verbose=0)["features"]
    net = MPVSNet(features.shape[-1], len(classes), encoder_units=6, num_paths=2, fc_units=5)
    net.mpae.adapt(features)
    return build_dam_cnn(vgg_serd, net)


def write_tiny_preset(root: Path, name: str = "tiny", light: str = None, size=TINY_SIZE) -> Path:
    """``root/name``: model.keras (float16), card.json (with the file's SHA-256 and check_faces),
    classes.json; with ``light`` ("ship" or "cache") a LiteRT light file listed in the card, shipped
    beside the model or made on first use."""
    from dam_cnn_tf.presets.light import describe_light_file
    from dam_cnn_tf.presets.packing import preset_model, sha256_of, store_float16
    from scripts_loader import build_preset_script

    folder = Path(root) / name
    folder.mkdir(parents=True)
    model = preset_model(tiny_dam_cnn(size), TINY_CLASSES, mirror_average=True)
    path = store_float16(model, folder / "model.keras")
    from dam_cnn_tf.models.model_file import load_model_file

    shipped = load_model_file(path)
    card = {"name": name, "description": "a tiny test preset", "class_names": list(TINY_CLASSES),
            "input": "RGB 0-255", "input_shape": [size, size, 3], "licence": "test",
            "check_faces": build_preset_script().check_faces(shipped, size),
            "file": {"name": "model.keras", "bytes": path.stat().st_size, "sha256": sha256_of(path)}}
    (folder / "classes.json").write_text(json.dumps({"class_names": list(TINY_CLASSES)}))
    if light is not None:
        card["light"] = describe_light_file(folder, card, ship=light == "ship")
    (folder / "card.json").write_text(json.dumps(card, indent=1))
    return folder


def change_one_weight(path: Path) -> None:
    """Rewrite the ``.keras`` archive at ``path`` with one weight changed: still a valid archive."""
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    weights = path.with_suffix(".h5.tmp")
    weights.write_bytes(entries["model.weights.h5"])
    with h5py.File(weights, "r+") as f:
        names = []
        f.visititems(lambda n, item: names.append(n) if isinstance(item, h5py.Dataset) and item.size > 1 else None)
        data = f[names[0]]
        values = data[()]
        values.flat[0] = values.flat[0] + 0.5
        data[...] = values
    entries["model.weights.h5"] = weights.read_bytes()
    weights.unlink()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def copy_preset(src: Path, root: Path) -> Path:
    folder = Path(root) / src.name
    shutil.copytree(src, folder)
    return folder
