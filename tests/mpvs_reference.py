"""MPVS-Net's losses (Eq. 6-10) and their gradients in NumPy, independent of any Keras backend.

For nets built with ``dropout=0``: the gradients are central differences in float64 of the
forward pass written here from the paper's equations.
"""

from __future__ import annotations

import numpy as np
from keras import ops


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def weights_of(net) -> dict:
    """The net's variables by name, as float64 arrays."""
    mpae = net.mpae
    named = {"W_E": mpae.encoder.kernel, "B_E": mpae.encoder.bias, "W_1": net.fc1.kernel, "B_1": net.fc1.bias,
             "W_2": net.classifier.kernel, "B_2": net.classifier.bias}
    for j in range(net.num_paths):
        named[f"V_{j}"], named[f"B_D{j}"] = mpae.decoders.path_variables(j)
    arrays = {name: ops.convert_to_numpy(v).astype(np.float64) for name, v in named.items()}
    arrays["max"] = ops.convert_to_numpy(mpae.scaler.feature_max).astype(np.float64)
    return arrays


def variable_names(net) -> dict:
    """``id(variable)`` to its name in ``weights_of``."""
    mpae = net.mpae
    names = {id(mpae.encoder.kernel): "W_E", id(mpae.encoder.bias): "B_E", id(net.fc1.kernel): "W_1",
             id(net.fc1.bias): "B_1", id(net.classifier.kernel): "W_2", id(net.classifier.bias): "B_2"}
    for j in range(net.num_paths):
        kernel, bias = mpae.decoders.path_variables(j)
        names[id(kernel)], names[id(bias)] = f"V_{j}", f"B_D{j}"
    return names


def losses(w: dict, s, labels, targets):
    """``(L_ce, [J_1, ..., J_N])`` of Eq. 5/10 and Eq. 8."""
    scale = lambda x: np.clip(x / w["max"], 0.0, 1.0)  # noqa: E731
    h = _sigmoid(scale(s) @ w["W_E"] + w["B_E"])  # Eq. 6
    logits = np.maximum(h @ w["W_1"] + w["B_1"], 0.0) @ w["W_2"] + w["B_2"]
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    cross_entropy = -log_p[np.arange(len(labels)), labels].mean()
    paths = []
    for j in range(targets.shape[1]):
        reconstruction = _sigmoid(h @ w[f"V_{j}"] + w[f"B_D{j}"])  # Eq. 7
        paths.append(((reconstruction - scale(targets[:, j])) ** 2).sum(axis=1).mean())  # Eq. 8
    return cross_entropy, paths


def gradient(w: dict, f, names, eps: float = 1e-6) -> dict:
    """Central differences of the scalar ``f(w)`` with respect to each weight in ``names``."""
    grads = {}
    for name in names:
        g = np.zeros_like(w[name])
        for index in np.ndindex(w[name].shape):
            original = w[name][index]
            w[name][index] = original + eps
            up = f(w)
            w[name][index] = original - eps
            down = f(w)
            w[name][index] = original
            g[index] = (up - down) / (2 * eps)
        grads[name] = g
    return grads
