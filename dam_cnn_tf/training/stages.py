"""Algorithm 1 in a run directory: stage 1 (``training.stage1``), the salient features
(``training.features``), stage 2 (``training.stage2``), then the inference model (Fig. 2).

Each executes the run's ``Plan`` (``recipes.plan``); steps already completed are loaded, not
repeated, and an interrupted step resumes from its last completed round. Model selection uses
the validation part carved from the training data, never the test fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from dam_cnn_tf.data.face_set import FaceSet
from dam_cnn_tf.errors import one_line
from dam_cnn_tf.models.dam_cnn import build_dam_cnn
from dam_cnn_tf.recipes.plan import as_plan, end_to_end_passes, uses_trunk_cache  # noqa: F401  (re-exported)
from dam_cnn_tf.training.distribute import set_precision
from dam_cnn_tf.training.features import extract_features  # noqa: F401  (re-exported)
from dam_cnn_tf.training.fit import BEST_WEIGHTS, fit_rounds as _fit  # noqa: F401  (re-exported)
from dam_cnn_tf.training.run_dir import RunDir, RunDirError, atomic_save_model
from dam_cnn_tf.training.stage1 import build_stage1_model, freeze_backbone_below, train_stage1, trunk_maps  # noqa: F401
from dam_cnn_tf.training.stage2 import (  # noqa: F401  (re-exported)
    needs_vgg_serd,
    num_paths_for,
    stage2_kept_round,
    start_from_vgg_serd,
    train_mpvs_net,
    train_stage2,
)


def train_dam_cnn(plan, train: FaceSet, val: FaceSet, run: RunDir, class_names, stage: str = "all",
                  verbose: int = 1):
    """Algorithm 1 end to end in ``run``; returns the inference model (or VGG-SERD for stage 1 alone)."""
    vgg_serd, model = train_both_stages(plan, train, val, run, class_names, stage, verbose)
    return vgg_serd if model is None else model


def train_both_stages(plan, train: FaceSet, val: FaceSet, run: RunDir, class_names, stage: str = "all",
                      verbose: int = 1):
    """``(VGG-SERD, DAM-CNN)`` as ``plan`` (or ``TrainConfig`` settings) says; DAM-CNN is None
    with ``stage="1"``. VGG-SERD keeps its own classifier (fc6-fc8), so stage 1 can be judged
    beside the final model."""
    plan = as_plan(plan, len(train))
    set_precision(plan.settings.mixed_precision)
    keras.utils.set_random_seed(plan.settings.seed)
    num_classes = len(class_names)
    vgg_serd = train_stage1(plan, train, val, run, num_classes, verbose)
    if stage == "1":
        return vgg_serd, None
    net = train_stage2(plan, vgg_serd, train, val, run, num_classes, verbose)
    model = build_dam_cnn(vgg_serd, net)
    if not run.model_path.exists() or "model" not in run.completed():
        atomic_save_model(model, run.model_path)
        run.write_json("classes.json", {"class_names": list(class_names)})
        run.mark_completed("model")
    return vgg_serd, model


def load_class_names(run_or_model_path) -> list:
    path = Path(run_or_model_path)
    candidates = [path / "classes.json", path.parent / "classes.json"]
    for candidate in candidates:
        if candidate.exists():
            try:
                names = json.loads(candidate.read_text(encoding="utf-8"))["class_names"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
                raise RunDirError(f"{candidate}: not a class list of the form {{\"class_names\": [...]}} "
                                  f"({one_line(error)})") from None
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise RunDirError(f"{candidate}: class names must be a list of non-empty strings")
            return names
    raise FileNotFoundError(f"{path}: no classes.json beside the model")
