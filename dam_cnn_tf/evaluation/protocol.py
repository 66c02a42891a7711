"""Train a run, then score it: the one routine behind ``train``, cross-validation, the paper's
experiments and the preset build.

``train_and_evaluate`` records the run's plan (refusing a run directory that holds another),
trains both stages on ``fold.train`` (choosing checkpoints on ``fold.val``), then scores the
final model and stage 1's own classifier (VGG-SERD) on ``fold.test``, or on ``fold.val`` when
the fold has no test part (a run of ``damcnn-tf train``): what stage 2 added on these faces,
as the paper's Table 4 asks. The test part is predicted once, after training.
"""

from __future__ import annotations

import keras

from dam_cnn_tf.data.protocols import Fold
from dam_cnn_tf.evaluation.metrics import (
    accuracy_on, classification_report, cross_entropy, predict_probabilities, predictions_csv,
)
from dam_cnn_tf.evaluation.reports import write_evaluation
from dam_cnn_tf.recipes.plan import Plan
from dam_cnn_tf.training.prepare import PreparedData
from dam_cnn_tf.training.run_dir import RunDir, atomic_write_text
from dam_cnn_tf.training.run_plan import record_plan
from dam_cnn_tf.training.stage1 import stage1_kept
from dam_cnn_tf.training.stages import stage2_kept_round, train_both_stages

TEST, VALIDATION = "test", "validation"


def fold_plan(plan_or_settings, fold: Fold, sources=None) -> Plan:
    """The plan of ``fold``: a ``Plan`` as it is, or the plan of settings on its training part."""
    from dam_cnn_tf.recipes.plan import as_plan, make_plan
    from dam_cnn_tf.recipes.options import TrainConfig

    if isinstance(plan_or_settings, TrainConfig) and sources is not None:
        return make_plan(plan_or_settings, len(fold.train), sources)
    return as_plan(plan_or_settings, len(fold.train))


def finished_result(run: RunDir):
    """The test result of a run whose scoring on a test part is complete, else None."""
    done = run.read_json("test_evaluation.json")
    return done if done is not None and TEST in run.completed() else None


def train_and_evaluate(data: PreparedData, fold: Fold, plan, run: RunDir, stage: str = "all", verbose: int = 1,
                       remedy: str = "use another run directory") -> dict:
    """Train ``run`` on ``fold`` as ``plan`` (or settings) says, then score it; returns the
    result of the final model (VGG-SERD's own with ``stage="1"``), with ``stage1_accuracy``."""
    tested = len(fold.test) > 0
    if tested:
        done = finished_result(run)
        if done is not None:
            return done
    plan = fold_plan(plan, fold)
    settings = plan.settings
    with run.locked():
        record_plan(run, plan, remedy)
        train = data.face_set(fold.train, settings.pair_attribute)
        val = data.face_set(fold.val, settings.pair_attribute)
        vgg_serd, model = train_both_stages(plan, train, val, run, data.class_names, stage=stage, verbose=verbose)
        final = model if model is not None else vgg_serd
        scored = fold.test if tested else fold.val
        faces, labels = data.faces[scored], data.labels[scored]
        part = TEST if tested else VALIDATION
        stage1 = None
        if model is not None:
            stage1 = classification_report(labels, predict_probabilities(vgg_serd, faces, settings.input_size),
                                           data.class_names)
            if tested:
                write_evaluation(stage1, run.path, stem="stage1_test_evaluation", title=f"{fold.name}: VGG-SERD, test")
        probabilities = predict_probabilities(final, faces, settings.input_size)
        result = classification_report(labels, probabilities, data.class_names)
        result["cross_entropy"] = cross_entropy(labels, probabilities, len(data.class_names))
        result["fold"] = fold.name
        kept_stage1 = stage1_kept(run)
        if kept_stage1 is not None:  # the probe's state, or fine-tuning's, chosen on validation
            result["stage1_kept"] = kept_stage1
        if stage1 is not None:
            result["stage1_accuracy"] = stage1["accuracy"]
            if tested and len(val):  # the faces a choice between the two models may be made on
                result["validation_accuracy"] = accuracy_on(model, val, settings.input_size)
                result["stage1_validation_accuracy"] = accuracy_on(vgg_serd, val, settings.input_size)
            kept = stage2_kept_round(run)
            if kept is not None:
                result["stage2_kept_round"] = kept
        stem = "test_evaluation" if tested else "val_evaluation"
        if tested:
            atomic_write_text(run.path / "test_predictions.csv",
                              predictions_csv(fold.test, labels, probabilities, data.class_names))
        write_evaluation(result, run.path, stem=stem, title=f"{fold.name}: {part}" if tested else part)
        if tested:
            run.mark_completed(TEST, accuracy=result["accuracy"])
    keras.backend.clear_session()
    return result
