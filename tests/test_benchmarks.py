"""The benchmark suite runs end to end and writes every section; no timing is asserted."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ lives beside the package, not inside it
    sys.path.insert(0, str(REPO))

from benchmarks.costs import stage2_flops_per_sample, stage2_training_bytes  # noqa: E402
from benchmarks.run import SECTIONS, main  # noqa: E402


def _finite_numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _finite_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _finite_numbers(v)
    elif isinstance(value, float):
        yield value


def _check_payload(payload, sections):
    assert payload["config"]["name"] == "toy"
    assert set(payload["sections"]) == set(sections)
    assert all(math.isfinite(v) for v in _finite_numbers(payload["sections"]))
    for name, section in payload["sections"].items():
        assert section["seconds"] > 0, name


def test_costs_match_a_count_of_the_products():
    d, h, n, f, k = 10, 4, 3, 5, 2
    # Forward products (B = 1): encoder, N decoders, two FC layers.
    forward = [(d, h), *[(h, d)] * n, (h, f), (f, k)]
    macs = sum(a * b for a, b in forward)
    macs += sum(a * b for a, b in forward)  # weight gradients of every layer
    macs += sum(a * b for a, b in forward[1:])  # input gradients, except the encoder's (data)
    assert stage2_flops_per_sample(d, h, n, f, k) == 2 * macs
    memory = stage2_training_bytes(25088, 4096, 5, 4096, 7)
    assert memory["per_path_bytes"] == 16 * (4096 * 25088 + 25088)  # weight, 2 Adam moments, gradient
    assert memory["training_bytes"] == 16 * memory["parameters"]


def test_quick_sections(tmp_path):
    out = tmp_path / "quick.json"
    args = ["--config", "toy", "--json", str(out), "--section", "decoders", "--section", "pipeline"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "4 pair pipeline" in result.output and "3b decoders" in result.output
    payload = json.loads(out.read_text())
    _check_payload(payload, ("decoders", "pipeline"))
    pipeline = payload["sections"]["pipeline"]
    assert pipeline["in_memory_samples_per_s"] > 0 and pipeline["memmap_samples_per_s"] > 0
    # Without a stage-2 measurement there is nothing to compare with: no ratio, no verdict.
    assert pipeline["ratio"] is None and pipeline["met"] is None


def test_stage2_batch_and_variants_can_be_chosen(tmp_path):
    out = tmp_path / "stage2.json"
    args = ["--config", "toy", "--json", str(out), "--section", "stage2", "--stage2-batch", "3",
            "--stage2-variant", "float32", "--stage2-variant", "sgd"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["config"]["stage2_batch"] == 3
    variants = payload["sections"]["stage2"]["variants"]
    assert set(variants) == {"float32", "sgd"}
    assert all(v["batch"] == 3 and v["losses_finite"] for v in variants.values())
    bad = CliRunner().invoke(main, ["--config", "toy", "--stage2-variant", "fp8"])
    assert bad.exit_code != 0 and "--stage2-variant" in bad.output


@pytest.mark.slow
def test_toy_suite_end_to_end(tmp_path):
    out = tmp_path / "toy.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--config", "toy", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    _check_payload(payload, SECTIONS)
    for variant in payload["sections"]["stage2"]["variants"].values():
        assert variant["losses_finite"]
    pipeline = payload["sections"]["pipeline"]
    assert pipeline["stage2_consumes_samples_per_s"] == payload["sections"]["stage2"]["samples_per_s"]
    formats = payload["sections"]["inference"]["formats"]  # the exported files, timed beside the SavedModel
    assert set(formats) == {"saved_model", "litert", "litert_float16", "onnx"}
    for name, value in formats.items():
        if name == "onnx" and "error" in value:  # the onnx extra is not installed
            assert "dam-cnn-tf[onnx]" in value["error"]
            continue
        assert value["images_per_s"] > 0, name
    assert "1 exported litert_float16" in proc.stdout
    probes = payload["sections"]["memory"]["probes"]
    assert set(probes) == {"baseline", "stage2_n2", "stage2_n5", "inference"}
    for name, probe in probes.items():
        assert "error" not in probe, probe
        assert probe["peak_bytes"] > 100 * 2**20, name  # TensorFlow alone takes more than 100 MiB
    assert payload["machine"]["cpu_count"] >= 1
    assert "section" in proc.stdout and "wrote" in proc.stdout


def test_bad_config_is_a_one_line_error():
    result = CliRunner().invoke(main, ["--config", "huge"])
    assert result.exit_code != 0
    assert "--config" in result.output


def test_exported_formats_are_timed_beside_the_saved_model(tmp_path):
    import numpy as np

    from benchmarks import sections
    from benchmarks.configs import CONFIGS
    from test_export import HEIGHT, WIDTH, _tiny_model

    images = np.random.default_rng(0).uniform(0, 255, (2, HEIGHT, WIDTH, 3)).astype("float32")
    model, _ = _tiny_model(0, images)
    cfg = CONFIGS["toy"]
    paths = sections._export_formats(model, dataclasses.replace(cfg, num_classes=3), tmp_path)
    rates = sections._format_rates(cfg, images, lambda: model(images, training=False), paths)
    assert set(rates) == {"saved_model", *sections.EXPORT_FORMATS}
    for name, value in rates.items():
        if name == "onnx" and "error" in value:  # the onnx extra is not installed
            assert "dam-cnn-tf[onnx]" in value["error"]
            continue
        assert value["images_per_s"] > 0, name


@pytest.mark.slow
def test_the_device_script_runs_end_to_end_at_toy_sizes(tmp_path):
    """``benchmarks/device.sh --toy``: every section of the GPU run, on the JAX CPU build (~2.5 min)."""
    pytest.importorskip("jax")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(root / "benchmarks" / "device.sh"), "--toy"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "device-toy.json").read_text())
    assert not report["failed"]
    assert report["sections"]["machine"]["keras_backend"] == "jax"
    for name in ("stage2-float32", "stage2-mixed_bfloat16", "stage2-sgd"):
        assert all(row["samples_per_s"] > 0 and 0 < row["fraction_of_square_matmul"] for row in
                   report["sections"][name]["batches"].values())
    for name in ("stage1-face-resnet-train", "stage1-vgg-face-infer"):
        assert set(report["sections"][name]["batches"]) == {"1", "4"}


def test_a_face_subset_is_seeded_and_keeps_the_class_folders(tmp_path):
    from benchmarks import people_subset

    source = tmp_path / "source"
    for label, count in (("happy", 30), ("sad", 10)):
        (source / label).mkdir(parents=True)
        for i in range(count):
            (source / label / f"{i:03d}.png").write_bytes(f"{label}{i}".encode())
    people_subset.main([str(source), str(tmp_path / "a"), "--faces", "12", "--seed", "3"])
    people_subset.main([str(source), str(tmp_path / "b"), "--faces", "12", "--seed", "3"])
    drawn = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").glob("*/*"))
    assert len(drawn) == 12 and drawn == sorted(p.relative_to(tmp_path / "b").as_posix()
                                                 for p in (tmp_path / "b").glob("*/*"))
    for path in drawn:  # copied, byte for byte, into the same class folder
        assert (tmp_path / "a" / path).read_bytes() == (source / path).read_bytes()
    with pytest.raises(SystemExit, match="--faces 41: .* has only 40 images"):
        people_subset.main([str(source), str(tmp_path / "c"), "--faces", "41"])


def test_stage2_sweep_trains_stage_2_again_with_the_setting_given(tmp_path):
    from benchmarks import stage2_sweep
    from cli_helpers import TINY_OPTIONS, invoke, synthetic_folder

    folder = synthetic_folder(tmp_path / "data")
    out = tmp_path / "cv"
    invoke("crossval", "--data", folder, "--no-detect", "--protocol", "subject-kfold", "--folds", "2",
           "--out", out, *TINY_OPTIONS)
    figures = tmp_path / "sweep.json"
    stage2_sweep.main([str(out), "--folds", "1", "--set", "stage2_epochs=3", "--set", "lam=5", "--json", str(figures)])
    (entry,) = json.loads(figures.read_text())
    (fold,) = entry["folds"]
    # Three rounds instead of the run's two, on fold 2's own cached features.
    assert fold["fold"] == "fold-01" and fold["rounds"] == 3
    # The kept round is the one with the lowest validation cross-entropy, and the weights the
    # sweep scores afterwards are that round's.
    rounds = fold["round_val_cross_entropy"]
    assert fold["kept_round"] == 1 + int(np.argmin(rounds))
    assert fold["val_cross_entropy"] == pytest.approx(min(rounds), rel=1e-3)
    assert entry["set"] == ["stage2_epochs=3", "lam=5"]
    assert stage2_sweep.parse_setting("alpha-m=1e-3") == ("alpha_m", 1e-3)
    assert stage2_sweep.parse_setting("init-from-vgg-serd=False") == ("init_from_vgg_serd", False)
    # A setting that reaches back into stage 1 reads the fold's own VGG-SERD.
    stage2_sweep.main([str(out), "--folds", "0", "--set", "init_from_vgg_serd=true", "--json", str(figures)])
    entry = json.loads(figures.read_text())[-1]
    assert entry["set"] == ["init_from_vgg_serd=true"]
    # Started from VGG-SERD, the start competes with the rounds: round 0 when it was kept, which
    # no round then beats; else the best round, as without a competing start.
    started = entry["folds"][0]
    if started["kept_round"] == 0:
        assert started["val_cross_entropy"] < min(started["round_val_cross_entropy"]) * (1 + 1e-3)
    else:
        assert started["kept_round"] == 1 + int(np.argmin(started["round_val_cross_entropy"]))
    with pytest.raises(SystemExit, match="--set: .*'lamda'"):
        stage2_sweep.main([str(out), "--folds", "1", "--set", "lamda=5"])
    # A logistic regression on the same cached features, scored on the same validation faces.
    stage2_sweep.main([str(out), "--folds", "1", "--logistic", "0.5", "--json", str(figures)])
    entry = json.loads(figures.read_text())[-1]
    assert entry["set"] == ["logistic C=0.5"]
    (fold,) = entry["folds"]
    from dam_cnn_tf.data.feature_cache import FeatureCache

    val = FeatureCache.open(out / "fold-01" / "features" / "val")
    correct = fold["val_accuracy"] * len(val)
    assert np.isclose(correct, round(correct)) and fold["train_accuracy"] >= 0.5 and fold["val_cross_entropy"] > 0


def test_checkpoint_cost_times_the_round_end_writes_of_stage_2(tmp_path):
    from benchmarks import checkpoint_cost

    figures_path = tmp_path / "cost.json"
    checkpoint_cost.main(["--input-dim", "24", "--encoder-units", "8", "--num-paths", "2", "--fc-units", "6",
                          "--classes", "3", "--tries", "2", "--json", str(figures_path)])
    figures = json.loads(figures_path.read_text())
    assert len(figures["backup_seconds"]) == len(figures["best_seconds"]) == 2
    # The backup holds the weights and both Adam moments; the best checkpoint the weights alone.
    assert 4 * figures["weights"] <= figures["best_bytes"] < figures["backup_bytes"]
    assert figures["backup_bytes"] >= 3 * 4 * figures["weights"]  # float32 weights, first and second moments
