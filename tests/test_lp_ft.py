"""Stage 1 on a pretrained backbone: probe, then fine-tune, over the cached trunk (LP-FT)."""

import numpy as np
import pytest

from dam_cnn_tf.backbones.face_resnet.model import build_face_resnet
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.training.run_dir import RunDir
from dam_cnn_tf.training.stages import FaceSet, train_dam_cnn, train_stage1
from test_face_resnet import _manifest_of, _randomised

SIZE = 104


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return _manifest_of(_randomised(build_face_resnet(input_shape=(SIZE, SIZE, 3))), tmp_path_factory.mktemp("w"))


def faces(n, seed):
    rng = np.random.default_rng(seed)
    return FaceSet(rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8), np.arange(n) % 3)


def config(manifest, **changes):
    values = dict(backbone="face-resnet", backbone_weights=str(manifest), input_size=SIZE, classes=6, fc_units=8,
                  encoder_units=8, num_paths=2, fine_tune_from="conv256_down_conv1_conv", stage1_batch_size=4,
                  stage2_batch_size=4, probe_steps=4, stage1_steps=4, stage1_min_steps=2, stage2_steps=2,
                  stage2_min_steps=0, validate_every_steps=2, patience=1,
                  probe_passes=0, stage1_passes=0, stage2_passes=0)  # budgets of these few steps exactly
    return TrainConfig(**{**values, **changes})


def weights_of(model, *layers):
    backbone = model.get_layer("backbone")
    return {name: [w.copy() for w in backbone.get_layer(name).get_weights()] for name in layers}


def same(a, b):
    return all(np.array_equal(x, y) for name in a for x, y in zip(a[name], b[name]))


def test_probe_trains_the_head_only_then_fine_tuning_moves_the_chosen_blocks(tmp_path, manifest):
    train, val = faces(8, 0), faces(4, 1)
    pretrained = build_face_resnet(weights=manifest, include_top=False, input_shape=(SIZE, SIZE, 3))
    blocks = ("conv256_2_conv2_conv", "conv128_2_conv2_conv")
    original = {name: [w.copy() for w in pretrained.get_layer(name).get_weights()] for name in blocks}

    probed = train_stage1(config(manifest, stage1_steps=0), train, val, RunDir(tmp_path / "probe"), 3, verbose=0)
    assert same(weights_of(probed, *blocks), original)  # the probe leaves the backbone alone
    state = RunDir(tmp_path / "probe").read_json("state.json")
    assert state["info"]["stage1_probe"]["steps"] == 4 and state["info"]["stage1"]["trunk_cache"]
    assert state["completed"] == ["stage1"]  # the phases are done with once the stage is

    # (the probe's state not competing, so that fine-tuning's weights are the ones kept)
    tuned = train_stage1(config(manifest, probe_competes=False), train, val, RunDir(tmp_path / "tuned"), 3, verbose=0)
    after = weights_of(tuned, *blocks)
    assert not np.array_equal(after["conv256_2_conv2_conv"][0], original["conv256_2_conv2_conv"][0])
    assert same({"conv128_2_conv2_conv": after["conv128_2_conv2_conv"]}, {"conv128_2_conv2_conv": original["conv128_2_conv2_conv"]})


def test_a_run_computes_each_trunk_map_once_and_resumes_after_the_probe(tmp_path, manifest, monkeypatch):
    from dam_cnn_tf.data.trunk_cache import TrunkCache
    from dam_cnn_tf.training import fit

    computed = {"faces": 0}
    original_maps = TrunkCache.maps

    def counting_maps(self, faces_, compute, log=None):
        def counted(batch):
            computed["faces"] += len(batch)
            return compute(batch)
        return original_maps(self, faces_, counted, log)

    monkeypatch.setattr(TrunkCache, "maps", counting_maps)
    train, val = faces(8, 2), faces(4, 3)
    run = RunDir(tmp_path / "run")
    fits = []
    original_fit = fit.fit_rounds
    monkeypatch.setattr(fit, "fit_rounds", lambda model, tr, va, epochs, stage_dir, *a, **k: (
        fits.append(stage_dir.name), original_fit(model, tr, va, epochs, stage_dir, *a, **k))[1])
    model = train_dam_cnn(config(manifest), train, val, run, ("a", "b", "c"), verbose=0)
    # Each face and its mirror once, for the probe, fine-tuning and stage 2's features alike.
    assert computed["faces"] == 2 * (8 + 4)
    assert fits == ["probe", "stage1", "stage2"]
    assert model.output["probabilities"].shape[-1] == 3

    # A second run over the same faces finds every map; one killed after its probe skips it.
    state = run.read_json("state.json")
    state["completed"] = ["stage1_probe"]
    run.write_json("state.json", state)
    fits.clear()
    train_stage1(config(manifest), train, val, run, 3, verbose=0)
    assert computed["faces"] == 2 * (8 + 4) and fits == ["stage1"]


def test_no_probe_without_pretrained_weights_and_no_cache_without_a_cut(tmp_path):
    run = RunDir(tmp_path / "scratch")
    plain = TrainConfig(backbone="compact-tiny", input_size=32, classes=6, fc_units=8, stage1_steps=2,
                        stage1_batch_size=4, validate_every_steps=2)
    small = FaceSet(np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3)).astype(np.uint8), np.arange(6) % 3)
    train_stage1(plain, small, small, run, 3, verbose=0)
    info = run.read_json("state.json")["info"]
    assert info["stage1"]["phases"] == ["fine-tune"] and not info["stage1"]["trunk_cache"]
    assert (tmp_path / "scratch" / "stage1" / "metrics.csv").exists()


def test_only_fine_tuning_moves_the_cached_maps(tmp_path, manifest, monkeypatch):
    """--trunk-shift applies to the fine-tuning phase's trunk maps, never to the probe's 4x4
    backbone output nor to validation."""
    from dam_cnn_tf.data import pipeline
    from dam_cnn_tf.training import features, stage1

    calls = []
    real = pipeline.trunk_dataset

    def recording(maps, labels, *args, shift=0, **kwargs):
        calls.append((tuple(maps.shape[2:]), shift))
        return real(maps, labels, *args, shift=shift, **kwargs)

    for module in (stage1, features):    # the fine-tuning phase's maps, and the probe's features
        monkeypatch.setattr(module, "trunk_dataset", recording)
    train_stage1(config(manifest, augment=True, trunk_shift=1), faces(8, 0), faces(4, 1), RunDir(tmp_path), 3, verbose=0)
    trunk_shape = next(shape for shape, _ in calls if shape[0] > 4)
    assert (trunk_shape, 1) in calls                      # fine-tuning's training maps move
    assert all(s == 0 for shape, s in calls if shape[0] <= 4)  # the probe's do not
    assert sum(s == 1 for _, s in calls) == 1            # and neither does validation


def _capture_fine_tuning_start(monkeypatch):
    """The model fine-tuning trains, and its weights before its first step (the probe's state)."""
    from dam_cnn_tf.training import fit

    seen = {}
    original = fit.fit_phase

    def capturing(model, train, val, phase, *args, **kwargs):
        if phase.name == "fine-tune":
            seen["model"], seen["start"] = model, [w.copy() for w in model.get_weights()]
        return original(model, train, val, phase, *args, **kwargs)

    monkeypatch.setattr(fit, "fit_phase", capturing)
    return seen


def test_fine_tuning_that_hurts_validation_keeps_the_probe_bit_for_bit(tmp_path, manifest, monkeypatch):
    import json

    import keras

    from dam_cnn_tf.training.stage1 import build_stage1_model, stage1_kept

    seen = _capture_fine_tuning_start(monkeypatch)
    train, val = faces(8, 4), faces(4, 5)
    settings = config(manifest, alpha_s=1.0, stage1_steps=4)  # a rate that wrecks what the probe learned
    run = RunDir(tmp_path / "run")
    model = train_stage1(settings, train, val, run, 3, verbose=0)

    # Every fine-tuning round scored worse on validation than the probe's state it started from...
    start = json.loads((tmp_path / "run" / "stage1" / "best.weights.npz.json").read_text())
    rounds = json.loads((tmp_path / "run" / "stage1" / "metrics.json").read_text())
    assert start["epoch"] == 0 and len(rounds) == 2
    assert all(r["val_loss"] > start["best"] for r in rounds)
    # ...so stage 1 ends as the probe left it, bit for bit, in memory and in its saved weights.
    assert all(np.array_equal(a, b) for a, b in zip(seen["model"].get_weights(), seen["start"]))
    reloaded = build_stage1_model(settings, 3)
    reloaded.load_weights(tmp_path / "run" / "stage1" / "vgg_serd.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(reloaded.get_weights(), model.get_weights()))
    assert stage1_kept(run) == "probe"
    assert run.read_json("state.json")["info"]["stage1"]["kept_round"] == 0
    # The start was scored by the phase's monitor through the cached trunk: the same loss the
    # whole model gives on the validation images.
    from dam_cnn_tf.data.pipeline import image_dataset

    reloaded.compile(loss="sparse_categorical_crossentropy")
    whole = reloaded.evaluate(image_dataset(val.images, val.labels, 4, SIZE, preprocess=False), verbose=0,
                              return_dict=True)["loss"]
    assert whole == pytest.approx(start["best"], rel=1e-4)
    keras.backend.clear_session()


def test_fine_tuning_that_wins_on_validation_is_kept(tmp_path, manifest, monkeypatch):
    from dam_cnn_tf.training.stage1 import stage1_kept

    seen = _capture_fine_tuning_start(monkeypatch)
    train = faces(8, 6)
    # A probe that barely moves, then fine-tuning scored on its own training faces: it must win.
    settings = config(manifest, alpha_probe=1e-9, alpha_s=1e-3, stage1_steps=8, stage1_min_steps=8)
    run = RunDir(tmp_path / "run")
    train_stage1(settings, train, train, run, 3, verbose=0)
    assert stage1_kept(run) == "fine-tuned" and run.read_json("state.json")["info"]["stage1"]["kept_round"] >= 1
    assert not all(np.array_equal(a, b) for a, b in zip(seen["model"].get_weights(), seen["start"]))


def test_the_probe_s_inputs_are_the_same_computed_in_chunks(tmp_path, manifest, monkeypatch):
    """The probe's inputs (trunk maps through the frozen blocks) are computed a chunk at a time:
    with one chunk or several, a short last one among them, the same arrays."""
    from dam_cnn_tf.data import pipeline
    from dam_cnn_tf.training import stage1

    seen = {}

    def recording(maps, labels, *args, **kwargs):
        if maps.shape[2] <= 4:  # the probe's 4x4 backbone output, not the trunk maps
            seen.setdefault(stage1.BACKBONE_OUTPUT_CHUNK, []).append(np.array(maps))
        return pipeline.trunk_dataset(maps, labels, *args, **kwargs)

    monkeypatch.setattr(stage1, "trunk_dataset", recording)
    for chunk in (4096, 3):  # one chunk, then several with a short last one (16 maps of 8 faces)
        monkeypatch.setattr(stage1, "BACKBONE_OUTPUT_CHUNK", chunk)
        train_stage1(config(manifest, stage1_steps=0), faces(8, 0), faces(4, 1), RunDir(tmp_path / str(chunk)), 3,
                     verbose=0)
    assert len(seen[3]) == len(seen[4096]) == 2  # training and validation
    for whole, chunked in zip(seen[4096], seen[3]):
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_a_run_stopped_after_its_last_phase_reports_its_rounds(tmp_path, manifest):
    """Stopped between the last phase's end and the stage's (a kill there), the resumed stage
    reports the rounds its last phase ran, and trains nothing again."""
    run = RunDir(tmp_path)
    train, val = faces(8, 0), faces(4, 1)
    train_stage1(config(manifest), train, val, run, 3, verbose=0)
    state = run.read_json("state.json")
    rounds = state["info"]["stage1"]["epochs"]
    assert rounds == state["info"]["stage1_fine-tune"]["epochs"] > 0
    state["completed"] = ["stage1_probe", "stage1_fine-tune"]  # as it was before the stage's last mark
    del state["info"]["stage1"]
    run.write_json("state.json", state)
    metrics = (tmp_path / "stage1" / "metrics.csv").read_text()
    train_stage1(config(manifest), train, val, run, 3, verbose=0)
    assert run.read_json("state.json")["info"]["stage1"]["epochs"] == rounds
    assert (tmp_path / "stage1" / "metrics.csv").read_text() == metrics  # nothing trained again
