"""Accuracy, per-class recall and confusion matrices (Tables 5 and 7), with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from dam_cnn_tf.data.pipeline import image_dataset
from dam_cnn_tf.models.dam_cnn import PROBABILITIES


def predict_probabilities(model, faces: np.ndarray, input_size: int, batch_size: int = 32) -> np.ndarray:
    """Class probabilities of a DAM-CNN inference model (or a VGG-SERD) for uint8 faces."""
    batches = image_dataset(faces, None, batch_size, input_size, preprocess=False)
    out = model.predict(batches, verbose=0)
    return out[PROBABILITIES] if isinstance(out, dict) else out


def accuracy_on(model, faces, input_size: int) -> float:
    """The accuracy of ``model`` on a ``FaceSet`` (its uint8 images and labels)."""
    predicted = predict_probabilities(model, faces.images, input_size).argmax(axis=1)
    return float(accuracy_score(faces.labels, predicted))


def classification_report(labels, probabilities, class_names) -> dict:
    """Accuracy, per-class recall and the confusion matrix (rows: true, columns: predicted)."""
    labels = np.asarray(labels)
    predicted = np.asarray(probabilities).argmax(axis=1)
    indices = np.arange(len(class_names))
    recall = recall_score(labels, predicted, labels=indices, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "num_samples": int(len(labels)),
        "per_class_recall": {name: float(r) for name, r in zip(class_names, recall)},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "class_names": list(class_names),
    }


def cross_entropy(labels, probabilities, num_classes: int) -> float:
    """The mean cross-entropy of the true classes (scikit-learn's log loss; probabilities clipped)."""
    from sklearn.metrics import log_loss

    probabilities = np.asarray(probabilities, np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 softmax rounding
    return float(log_loss(np.asarray(labels), probabilities, labels=np.arange(num_classes)))


def predictions_csv(indices, labels, probabilities, class_names) -> str:
    """One row per sample: its index in the data set, true and predicted class, probabilities."""
    import csv
    import io

    probabilities = np.asarray(probabilities)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "true", "predicted", *(f"p_{name}" for name in class_names)])
    for index, label, row in zip(indices, labels, probabilities):
        writer.writerow([int(index), class_names[int(label)], class_names[int(row.argmax())],
                         *(f"{p:.6g}" for p in row)])
    return out.getvalue()


def read_predictions(path) -> dict:
    """``{index: (true, predicted)}`` from a ``predictions_csv`` file."""
    import csv

    with open(path, newline="") as f:
        return {int(row["index"]): (row["true"], row["predicted"]) for row in csv.DictReader(f)}


def row_percentages(matrix) -> np.ndarray:
    """A count matrix as row percentages, as the paper prints Tables 5 and 7."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(100.0 * matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
