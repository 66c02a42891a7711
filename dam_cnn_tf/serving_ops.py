"""Which TensorFlow Serving releases can load an export: the ops of its graph against a known list."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, Union

OPS_FILE = Path(__file__).with_name("serving_ops.json")


def known_ops() -> Dict[str, str]:
    """Op name → the oldest ``tensorflow/serving`` release vouched for (``serving_ops.json``)."""
    return json.loads(OPS_FILE.read_text(encoding="utf-8"))["ops"]


def saved_model_ops(version_dir: Union[str, os.PathLike]) -> set:
    """Every op type in ``saved_model.pb``: the graphs and their function libraries."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for graph in saved.meta_graphs:
        ops.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def _release(version: str) -> tuple:
    return tuple(int(part) for part in version.split("."))


def minimum_serving_version(ops: Iterable[str]) -> str:
    """The oldest release that has all ``ops``; ``ValueError`` naming any op not in the list."""
    known = known_ops()
    unknown = sorted(set(ops) - set(known))
    if unknown:
        raise ValueError(f"ops not in {OPS_FILE.name}, check which TF Serving release has them: {', '.join(unknown)}")
    return max((known[op] for op in ops), key=_release, default="0")
