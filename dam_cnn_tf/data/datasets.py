"""``load_dataset``: one entry point for every layout, by name or detected."""

from __future__ import annotations

from pathlib import Path

from dam_cnn_tf.data.ckplus import is_ckplus_root, load_ckplus
from dam_cnn_tf.data.fer2013 import load_fer2013, load_ferplus, sniff_csv_header
from dam_cnn_tf.data.folders import has_split_folders, load_folders, load_sfew, load_tfeid
from dam_cnn_tf.data.jaffe import is_jaffe_name, load_jaffe
from dam_cnn_tf.data.loading import DatasetFormatError, LoadedDataset
from dam_cnn_tf.data.manifest import load_baum2i, load_manifest


class UnknownLayoutError(ValueError):
    """``layout`` names no known dataset layout, or none could be detected; one line."""


def _load_fer2013_path(path, **options):
    path = Path(path)
    return load_fer2013(path / "fer2013.csv" if path.is_dir() else path, **options)


def _load_ferplus_path(path, fer2013_csv=None, **options):
    path = Path(path)
    votes = path / "fer2013new.csv" if path.is_dir() else path
    pixels = fer2013_csv or votes.parent / "fer2013.csv"
    return load_ferplus(votes, pixels, **options)


def _load_manifest_path(path, **options):
    path = Path(path)
    return load_manifest(path / "index.csv" if path.is_dir() else path, **options)


LAYOUTS = {
    "folders": load_folders,
    "manifest": _load_manifest_path,
    "fer2013": _load_fer2013_path,
    "ferplus": _load_ferplus_path,
    "ckplus": load_ckplus,
    "jaffe": load_jaffe,
    "tfeid": load_tfeid,
    "sfew": load_sfew,
    "baum2i": load_baum2i,
}


def _csv_layout(csv_path: Path):
    header = set(sniff_csv_header(csv_path))
    if {"emotion", "pixels"} <= header:
        return "fer2013"
    if {"Image name", "NF"} <= header:
        return "ferplus"
    if {"path", "label"} <= header:
        return "manifest"
    return None


def detect_layout(path) -> str:
    """The layout name of ``path`` (a key of ``LAYOUTS``), from its files and CSV headers.

    Order: a CSV file by its header; a folder with ``fer2013new.csv`` (FER+),
    ``fer2013.csv``, ``index.csv`` (manifest), CK+'s folders, JAFFE file names, then
    class folders. TFEID, SFEW and BAUM-2i look like ``folders``/``manifest`` and are
    only chosen by name. Raises ``UnknownLayoutError`` naming ``path``.
    """
    path = Path(path)
    if path.is_file():
        layout = _csv_layout(path) if path.suffix.lower() == ".csv" else None
        if layout is None:
            raise UnknownLayoutError(f"{path}: not a dataset CSV (expected path,label or emotion,pixels columns)")
        return layout
    if not path.is_dir():
        raise UnknownLayoutError(f"{path}: no such file or directory")
    for file_name, layout in (("fer2013new.csv", "ferplus"), ("fer2013.csv", "fer2013"), ("index.csv", "manifest")):
        if (path / file_name).is_file() and _csv_layout(path / file_name) == layout:
            return layout
    if is_ckplus_root(path):
        return "ckplus"
    if any(is_jaffe_name(p.name) for p in path.rglob("*.tif*")):
        return "jaffe"
    if has_split_folders(path) or any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return "folders"
    raise UnknownLayoutError(f"{path}: cannot detect the dataset layout; pass layout= one of {', '.join(LAYOUTS)}")


def load_dataset(path, layout: str = "auto", **options) -> LoadedDataset:
    """Load the dataset at ``path`` with the named ``layout`` (see ``LAYOUTS``) or, with
    ``"auto"``, the detected one (``detect_layout``). ``options`` go to the layout's loader
    (e.g. ``on_bad="skip"|"error"``, ``unknown_labels="drop"``, ``name=``).
    """
    if layout == "auto":
        layout = detect_layout(path)
    if layout not in LAYOUTS:
        raise UnknownLayoutError(f"unknown dataset layout {layout!r}; choose auto or one of {', '.join(LAYOUTS)}")
    if not Path(path).exists():
        raise DatasetFormatError(path, "no such file or directory")
    return LAYOUTS[layout](path, **options)
