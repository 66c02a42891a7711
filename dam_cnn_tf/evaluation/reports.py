"""Result files of evaluations and cross-validation: JSON, CSV, markdown and PNG.

The confusion matrix image is drawn with OpenCV, so no plotting library is needed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

from dam_cnn_tf.evaluation.metrics import row_percentages
from dam_cnn_tf.training.run_dir import atomic_write_json, atomic_write_text
from dam_cnn_tf.viz.attention import write_png


def confusion_csv(matrix, class_names) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *row])
    return out.getvalue()


def confusion_png(matrix, class_names, path, title: str = "") -> None:
    """Row-normalised confusion matrix as a PNG (percent in each cell, darker = more)."""
    percent = row_percentages(matrix)
    k = len(class_names)
    cell, left, top = 64, 110, 60 if title else 40
    image = np.full((top + k * cell + 10, left + k * cell + 10, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(image, title, (10, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for j, name in enumerate(class_names):
        cv2.putText(image, name[:8], (left + j * cell + 4, top - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, name in enumerate(class_names):
        y = top + i * cell
        cv2.putText(image, name[:12], (6, y + cell // 2 + 4), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(k):
            x = left + j * cell
            shade = int(255 - 2.0 * percent[i, j])
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), (255, shade, shade), -1)
            colour = (255, 255, 255) if percent[i, j] > 60 else (0, 0, 0)
            cv2.putText(image, f"{percent[i, j]:.1f}", (x + 8, y + cell // 2 + 4), font, 0.45, colour, 1, cv2.LINE_AA)
    write_png(path, image)


def write_evaluation(result: dict, out_dir, stem: str = "evaluation", title: str = "") -> None:
    """``result`` from ``classification_report`` as JSON, the matrix as CSV and PNG."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{stem}.json", result)
    atomic_write_text(out_dir / f"{stem}_confusion.csv", confusion_csv(result["confusion_matrix"], result["class_names"]))
    confusion_png(result["confusion_matrix"], result["class_names"], out_dir / f"{stem}_confusion.png", title)


def mean_std(values) -> tuple:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=0))


def validation_comparison(summary: dict):
    """Both models' mean accuracy on the folds' validation parts, in words, or None if not recorded."""
    if "stage1_validation_fold_accuracies" not in summary:
        return None
    stage1, _ = mean_std(summary["stage1_validation_fold_accuracies"])
    final, _ = mean_std(summary["validation_fold_accuracies"])
    return (f"on the validation parts, where a choice between the two belongs: VGG-SERD {100 * stage1:.2f}%, "
            f"DAM-CNN {100 * final:.2f}% (mean of folds)")


def below_stage1_note(summary: dict):
    """One line when DAM-CNN's mean is below its own stage 1's (VGG-SERD) on the same folds, else None."""
    stage1 = summary.get("stage1_fold_accuracies")
    if not stage1 or len(stage1) != summary["folds"]:
        return None
    stage1_mean, _ = mean_std(stage1)
    # Equal fold by fold is a tie, whatever the rounding of the two means.
    if summary["mean_accuracy"] >= stage1_mean or np.isclose(summary["mean_accuracy"], stage1_mean, rtol=0, atol=1e-9):
        return None
    validation = validation_comparison(summary)
    return (f"Note: stage 2 lowered the mean: VGG-SERD, stage 1's own classifier, scored {100 * stage1_mean:.2f}% on "
            f"the same test faces, DAM-CNN {100 * summary['mean_accuracy']:.2f}%"
            + (f"; {validation}" if validation else "")
            + "; see 'Below the frozen probe' (item 2) in docs/results.md")


def crossval_markdown(name: str, fold_results: list, summary: dict) -> str:
    """Per-fold and mean ± std accuracy, like the paper's Table 2, and the summed confusion matrix."""
    lines = [f"# {name}", "", "| fold | test samples | accuracy (%) |", "|---|---:|---:|"]
    for fold in fold_results:
        lines.append(f"| {fold['fold']} | {fold['num_samples']} | {100 * fold['accuracy']:.2f} |")
    lines.append(f"| **mean ± std** | {summary['num_samples']} | **{100 * summary['mean_accuracy']:.2f} ± "
                 f"{100 * summary['std_accuracy']:.2f}** |")
    if "stage1_fold_accuracies" in summary:
        stage1 = summary["stage1_fold_accuracies"]
        mean, std = mean_std(stage1)
        lines += ["", "Stage 1 alone, the same runs and test faces (VGG-SERD: its own classifier, fc6-fc8): "
                  + ", ".join(f"{100 * a:.2f}" for a in stage1) + f"; **{100 * mean:.2f} ± {100 * std:.2f}**."]
        validation = validation_comparison(summary)
        if validation:
            lines += ["", f"{validation[0].upper()}{validation[1:]}."]
        probe = summary.get("stage1_kept")
        if probe and "probe" in probe:
            lines += ["", f"Stage 1 kept the probe's state (SERD and fc6-fc8 on the frozen backbone) on "
                      f"{probe.count('probe')} of {len(probe)} folds: no fine-tuning round beat it on the validation "
                      "faces. Per fold: " + ", ".join(probe) + "."]
        kept = summary.get("stage2_kept_rounds")
        if kept and 0 in kept:
            lines += ["", f"Stage 2 kept its start (copied from stage 1's classifier) on {kept.count(0)} of "
                      f"{len(kept)} folds: no round beat it on the validation faces. Kept round per fold: "
                      + ", ".join(map(str, kept)) + "."]
        note = below_stage1_note(summary)
        if note:
            lines += ["", f"**{note}**"]
    names = summary["class_names"]
    percent = row_percentages(summary["confusion_matrix"])
    lines += ["", "Confusion matrix summed over folds (% of each true class):", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, row in zip(names, percent):
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    return "\n".join(lines) + "\n"
