"""Stage-2 options that used to be silently ignored or mislabelled."""

import numpy as np
import pytest

from dam_cnn_tf.models.mpae import MultiPathAutoencoder

from cli_helpers import TINY_OPTIONS, invoke, synthetic_folder


def test_encoder_from_fc6_reproduces_fc6_pre_activation_on_training_features():
    rng = np.random.default_rng(0)
    s = rng.gamma(1.0, 3.0, size=(20, 8)).astype("float32") * (rng.random((20, 8)) > 0.3)
    kernel, bias = rng.normal(size=(8, 5)), rng.normal(size=5)
    mpae = MultiPathAutoencoder(8, encoder_units=5, num_paths=1)
    mpae.adapt(s)
    mpae.init_encoder_from_dense(kernel, bias)
    h = np.asarray(mpae.encode(s))
    fc6_pre_activation = s.astype(np.float64) @ kernel + bias
    np.testing.assert_allclose(h, 1 / (1 + np.exp(-fc6_pre_activation)), rtol=1e-5, atol=1e-6)


def test_num_paths_beside_pair_attribute_is_refused_in_one_line(tmp_path):
    data = synthetic_folder(tmp_path / "faces")
    result = invoke("train", "--data", data, "--no-detect", "--run-dir", tmp_path / "run", *TINY_OPTIONS,
                    "--pair-attribute", "gender", expect_ok=False)
    assert result.exit_code != 0
    message = result.output.strip().splitlines()
    assert len(message) == 1 and "--num-paths" in message[0] and "--pair-attribute" in message[0], result.output
    assert not (tmp_path / "run").exists()


def _mpvs_net_started_from_a_trained_vgg_serd(tmp_path, monkeypatch, fc6_activation, **train):
    """A VGG-SERD with "trained" fc6-fc8 (weights unlike any fresh initialisation), the training
    features ``s``, and MPVS-Net as --init-from-vgg-serd starts it, before its first step (or,
    given options of ``train``, as stage 2 with them ends it)."""
    from dam_cnn_tf.data.feature_cache import write_feature_cache
    from dam_cnn_tf.training import stages
    from dam_cnn_tf.recipes.options import TrainConfig
    from dam_cnn_tf.training.run_dir import RunDir

    config = TrainConfig(**{**dict(backbone="compact-tiny", input_size=32, fc_units=16, encoder_units=16, num_paths=2,
                                   classes=6, init_from_vgg_serd=True, stage2_epochs=1, stage2_batch_size=8,
                                   fc6_activation=fc6_activation), **train})
    vgg_serd = stages.build_stage1_model(config, 3)
    rng = np.random.default_rng(1)
    for name in ("fc6", "fc7", "fc8"):
        vgg_serd.get_layer(name).set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                                              for w in vgg_serd.get_layer(name).get_weights()])
    width = vgg_serd.get_layer("fc6").get_weights()[0].shape[0]
    labels = np.arange(12) % 3
    s = (rng.gamma(1.0, 2.0, size=(12, width)) * (rng.random((12, width)) > 0.4)).astype("float32")
    caches = [write_feature_cache(tmp_path / part, lambda x: x, [(s, labels)], num_samples=12, verbose=0)
              for part in ("train", "val")]
    faces = stages.FaceSet(np.zeros((12, 1, 1, 3), np.uint8), labels)
    if not train:
        monkeypatch.setattr(stages, "_fit", lambda *args, **kwargs: (None, 0))  # the start, untrained
    net = stages.train_mpvs_net(config, caches, faces, faces, RunDir(tmp_path / "run"), 3, vgg_serd, verbose=0)
    return vgg_serd, s, net


def _softmax(logits):
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    return expected / expected.sum(axis=1, keepdims=True)


def test_mpvs_net_from_vgg_serd_starts_as_stage_1s_classifier_with_a_sigmoid_code(tmp_path, monkeypatch):
    """With --init-from-vgg-serd, MPVS-Net before its first step is fc6 -> sigmoid -> fc7 -> fc8 of
    the fold's VGG-SERD (NumPy below), on the features the encoder scales itself."""
    vgg_serd, s, net = _mpvs_net_started_from_a_trained_vgg_serd(tmp_path, monkeypatch, "relu")
    (k6, b6), (k7, b7), (k8, b8) = (vgg_serd.get_layer(n).get_weights() for n in ("fc6", "fc7", "fc8"))
    code = 1 / (1 + np.exp(-(s.astype(np.float64) @ k6 + b6)))  # Eq. 6 with fc6's pre-activation
    expected = _softmax(np.maximum(code @ k7 + b7, 0) @ k8 + b8)
    np.testing.assert_allclose(np.asarray(net(s)), expected, rtol=1e-4, atol=1e-5)


def _vgg_serd_classifier(vgg_serd, s):
    """VGG-SERD's own fc6-fc8 on flattened salient features (inference: no dropout)."""
    h = s
    for name in ("fc6", "fc7", "fc8"):
        h = vgg_serd.get_layer(name)(h)
    return np.asarray(h)


def test_a_sigmoid_fc6_makes_mpvs_nets_start_exactly_vgg_serds_classifier(tmp_path, monkeypatch):
    """--fc6-activation sigmoid (face-resnet's recipe): fc6 has the encoder's activation, so
    MPVS-Net starts as stage 1's classifier itself; with VGG-Face's ReLU fc6 it does not."""
    vgg_serd, s, net = _mpvs_net_started_from_a_trained_vgg_serd(tmp_path / "sigmoid", monkeypatch, "sigmoid")
    np.testing.assert_allclose(np.asarray(net(s)), _vgg_serd_classifier(vgg_serd, s), rtol=1e-4, atol=1e-5)
    vgg_serd, s, net = _mpvs_net_started_from_a_trained_vgg_serd(tmp_path / "relu", monkeypatch, "relu")
    assert np.abs(np.asarray(net(s)) - _vgg_serd_classifier(vgg_serd, s)).max() > 1e-2


def test_stage_2_that_only_gets_worse_ends_as_stage_1s_classifier(tmp_path, monkeypatch):
    """The start competes with stage 2's rounds: when every round scores a higher validation
    cross-entropy than the start (here a learning rate that wrecks the network), MPVS-Net ends
    as the start, which a sigmoid fc6 makes VGG-SERD's own classifier."""
    import json

    vgg_serd, s, net = _mpvs_net_started_from_a_trained_vgg_serd(
        tmp_path, monkeypatch, "sigmoid", stage2_epochs=3, alpha_m=50.0, alpha_fc=50.0, lr_schedule="constant")
    stage_dir = tmp_path / "run" / "stage2"
    rounds = json.loads((stage_dir / "metrics.json").read_text())
    kept = json.loads((stage_dir / "best.weights.npz.json").read_text())
    assert len(rounds) == 3 and all(r["val_cross_entropy"] > kept["best"] for r in rounds), (rounds, kept)
    assert kept["epoch"] == 0
    np.testing.assert_allclose(np.asarray(net(s)), _vgg_serd_classifier(vgg_serd, s), rtol=1e-4, atol=1e-5)
    from dam_cnn_tf.training.run_dir import RunDir, RunDirError
    from dam_cnn_tf.training.stages import stage2_kept_round

    assert stage2_kept_round(RunDir(tmp_path / "run")) == 0
    (stage_dir / "best.weights.npz.json").write_text('{"epoch": -1, "best": 1.0}')  # edited by hand
    with pytest.raises(RunDirError, match=r"best.weights.npz.json: malformed training state"):
        stage2_kept_round(RunDir(tmp_path / "run"))


def test_face_resnet_stage_2_starts_from_vgg_serd_and_refuses_unequal_widths_in_one_line():
    import pytest

    from dam_cnn_tf.recipes import resolve_config
    from dam_cnn_tf.recipes.options import ConfigError

    config = resolve_config(None, backbone="face-resnet")
    assert config.init_from_vgg_serd and config.encoder_units == config.fc_units
    assert config.fc6_activation == "sigmoid"
    vgg_face = resolve_config(None)
    assert not vgg_face.init_from_vgg_serd and vgg_face.fc6_activation == "relu"  # VGG-Face's own fc6
    # The FER2013 preset's recipe is kept as the preset was built.
    from dam_cnn_tf.recipes import resolve_settings

    preset, _ = resolve_settings(recipe="fer2013-face-resnet")
    assert not preset.init_from_vgg_serd and preset.encoder_units == 1024 and preset.fc6_activation == "relu"
    with pytest.raises(ConfigError, match=r"^--fc6-activation: must be one of relu, sigmoid, got 'tanh'$"):
        resolve_config(None, fc6_activation="tanh")
    with pytest.raises(ConfigError, match=r"^--init-from-vgg-serd: .*1024 != 512.*--no-init-from-vgg-serd$"):
        resolve_config(None, backbone="face-resnet", encoder_units=1024)
    assert resolve_config(None, backbone="face-resnet", encoder_units=1024, init_from_vgg_serd=False).encoder_units == 1024


def test_train_with_init_from_vgg_serd_runs_both_stages_and_records_it(tmp_path):
    import json

    run = tmp_path / "run"
    invoke("train", "--data", synthetic_folder(tmp_path / "faces"), "--no-detect", "--run-dir", run, *TINY_OPTIONS,
           "--init-from-vgg-serd")
    assert json.loads((run / "config.json").read_text())["init_from_vgg_serd"] is True
    assert "stage2" in json.loads((run / "state.json").read_text())["completed"]


def test_crossval_reports_the_folds_where_stage_2_kept_its_start(tmp_path):
    """A learning rate that wrecks MPVS-Net: on every fold the start (VGG-SERD's classifier, with a
    sigmoid fc6) is kept, results.json lists round 0 per fold, and results.md says so."""
    import json

    out = tmp_path / "cv"
    invoke("crossval", "--data", synthetic_folder(tmp_path / "faces"), "--no-detect", "--protocol", "subject-kfold",
           "--folds", "2", "--out", out, *TINY_OPTIONS, "--init-from-vgg-serd", "--fc6-activation", "sigmoid",
           "--alpha-m", "50", "--alpha-fc", "50", "--lr-schedule", "constant")
    summary = json.loads((out / "results.json").read_text())
    assert summary["stage2_kept_rounds"] == [0, 0]
    # Kept as the start, DAM-CNN is VGG-SERD: the same validation and test accuracy on each fold.
    assert summary["validation_fold_accuracies"] == summary["stage1_validation_fold_accuracies"]
    assert summary["fold_accuracies"] == summary["stage1_fold_accuracies"]
    assert "Stage 2 kept its start (copied from stage 1's classifier) on 2 of 2 folds" in (out / "results.md").read_text()
