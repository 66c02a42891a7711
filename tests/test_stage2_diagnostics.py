"""Stage-2 diagnostics against an independent NumPy computation of Eq. 6-11's gradients."""

import numpy as np
import pytest

from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.paper.diagnostics import code_saturation, diagnose_run, gradient_balance

from cli_helpers import TINY_OPTIONS, invoke, synthetic_folder


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_encoder_gradients(net, s, labels, targets):
    """d(Σ_j J_j)/d(W_E, B_E) and d(λ L_ce)/d(W_E, B_E), written out by hand (no dropout)."""
    f = lambda v: np.asarray(v.numpy(), dtype=np.float64)  # noqa: E731
    scale = f(net.mpae.scaler.feature_max)
    W_E, B_E = (f(v) for v in net.mpae.encoder.weights)
    W1, b1 = (f(v) for v in net.fc1.weights)
    W2, b2 = (f(v) for v in net.classifier.weights)
    x = np.clip(s / scale, 0, 1)
    t = np.clip(targets / scale, 0, 1)
    h = _sigmoid(x @ W_E + B_E)  # Eq. 6
    batch = len(s)

    # Σ_j J_j (Eq. 8-9) through the sigmoid decoders of Eq. 7.
    dh_rec = np.zeros_like(h)
    for j in range(net.num_paths):
        V, c = f(net.mpae.decoders.kernels[j]), f(net.mpae.decoders.biases[j])
        out = _sigmoid(h @ V + c)
        dh_rec += (2.0 / batch) * ((out - t[:, j]) * out * (1 - out)) @ V.T

    # λ·L_ce through the ReLU FC layer and the softmax (Eq. 10).
    pre = h @ W1 + b1
    logits = np.maximum(pre, 0) @ W2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(p.shape[1])[labels]
    d_logits = net.lam * (p - onehot) / batch
    dh_ce = ((d_logits @ W2.T) * (pre > 0)) @ W1.T

    def to_encoder(dh):
        dz = dh * h * (1 - h)
        return np.concatenate([(x.T @ dz).ravel(), dz.sum(0)])

    return to_encoder(dh_rec), to_encoder(dh_ce)


def test_gradient_balance_matches_numpy():
    rng = np.random.default_rng(0)
    net = MPVSNet(12, 3, encoder_units=5, num_paths=2, fc_units=7, dropout=0.5, lam=20.0)
    s = rng.gamma(1.0, 2.0, size=(9, 12)).astype("float32") * (rng.random((9, 12)) > 0.3)
    net.mpae.adapt(s)
    labels = rng.integers(0, 3, size=9)
    targets = s[rng.integers(0, 9, size=(9, 2))]
    got = gradient_balance(net, s, labels, targets)
    rec, ce = _numpy_encoder_gradients(net, s.astype(np.float64), labels, targets.astype(np.float64))
    np.testing.assert_allclose(got["grad_norm_reconstruction"], np.linalg.norm(rec), rtol=1e-4)
    np.testing.assert_allclose(got["grad_norm_lambda_cross_entropy"], np.linalg.norm(ce), rtol=1e-4)
    cosine = rec @ ce / (np.linalg.norm(rec) * np.linalg.norm(ce))
    np.testing.assert_allclose(got["grad_cosine"], cosine, atol=1e-4)
    np.testing.assert_allclose(got["grad_ratio"], np.linalg.norm(rec) / np.linalg.norm(ce), rtol=1e-4)


def test_code_saturation_sees_a_saturated_encoder():
    rng = np.random.default_rng(1)
    net = MPVSNet(10, 2, encoder_units=8, num_paths=1, fc_units=4)
    s = rng.random((20, 10)).astype("float32")
    net.mpae.adapt(s)
    assert code_saturation(net, s)["code_saturated_share"] < 0.5
    kernel, bias = net.mpae.encoder.get_weights()
    net.mpae.encoder.set_weights([kernel * 0, bias * 0 + 50.0])  # every unit pinned at 1
    saturated = code_saturation(net, s)
    assert saturated["code_saturated_share"] == 1.0
    assert saturated["code_units_constant_share"] == 1.0


def test_diagnose_run_reads_a_finished_run(tmp_path):
    data = synthetic_folder(tmp_path / "faces")
    run = tmp_path / "run"
    invoke("train", "--data", data, "--no-detect", "--run-dir", run, *TINY_OPTIONS)
    report = diagnose_run(run)
    assert set(report) == {"start", "trained"}
    for part in report.values():
        assert part["grad_norm_reconstruction"] > 0 and part["grad_norm_lambda_cross_entropy"] > 0
    # Trained weights differ from a fresh start, so the two reports must too.
    assert report["start"]["reconstruction"] != pytest.approx(report["trained"]["reconstruction"])


def test_diagnosed_start_is_the_runs_own_start_from_vgg_serd(tmp_path):
    import json

    data = synthetic_folder(tmp_path / "faces")
    run = tmp_path / "run"
    invoke("train", "--data", data, "--no-detect", "--run-dir", run, *TINY_OPTIONS, "--init-from-vgg-serd")
    from_vgg_serd = diagnose_run(run)["start"]
    # The same run read as if stage 2 had started at random: another start, so another report.
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "init_from_vgg_serd": False}))
    at_random = diagnose_run(run)["start"]
    assert from_vgg_serd["code_mean"] != pytest.approx(at_random["code_mean"])


def test_prediction_agreement_counts_faces_fixed_broken_and_unchanged(tmp_path):
    from dam_cnn_tf.evaluation.metrics import predictions_csv
    from dam_cnn_tf.paper.diagnostics import prediction_agreement

    classes = ("a", "b", "c")
    labels = np.array([0, 1, 2, 0, 1])

    def write(run, fold, predicted):
        probabilities = np.eye(3)[predicted] * 0.8 + 0.2 / 3
        (tmp_path / run / fold).mkdir(parents=True)
        (tmp_path / run / fold / "test_predictions.csv").write_text(
            predictions_csv(np.arange(10, 15), labels, probabilities, classes))

    # Baseline right on faces 10, 11, 13; the other fixes 12, breaks 11, and changes 14 (both wrong).
    write("vgg", "fold-00", [0, 1, 0, 0, 0])
    write("dam", "fold-00", [0, 2, 2, 0, 2])
    write("vgg", "fold-01", [0, 1, 2, 0, 1])  # a second fold predicted alike by both
    write("dam", "fold-01", [0, 1, 2, 0, 1])
    counts = prediction_agreement(tmp_path / "vgg", tmp_path / "dam")
    assert counts == {"folds": 2, "faces": 10, "same": 7, "fixed": 1, "broken": 1, "changed_both_wrong": 1}
    with pytest.raises(ValueError, match="no fold with test_predictions.csv"):
        prediction_agreement(tmp_path / "vgg", tmp_path / "missing")
