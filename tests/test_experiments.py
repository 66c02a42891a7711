"""``damcnn-tf experiment``: the paper's comparisons at toy size, the shared stage 1 and the
attention check."""

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from cli_helpers import read_json

from dam_cnn_tf.commands.experiment import experiment
from dam_cnn_tf.paper.attention_check import attention_check, region_mass_share
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.paper.experiments import experiment_markdown, within_one_std
from dam_cnn_tf.training.run_dir import RunDir
from dam_cnn_tf.paper.shared_stage1 import SharedStage1Error, share_stage1

TOY = [
    "--input-size", "32", "--backbone", "compact-tiny", "--fc-units", "8", "--encoder-units", "16",
    "--stage1-epochs", "1", "--stage2-epochs", "1", "--stage1-batch-size", "16", "--stage2-batch-size", "16",
    "--folds", "2", "--quiet",
]
SYNTHETIC = ["--synthetic", "6", "--synthetic-images", "1"]


def run_experiment(*args, expect_ok=True):
    result = CliRunner().invoke(experiment, [str(a) for a in args], catch_exceptions=False)
    if expect_ok:
        assert result.exit_code == 0, result.output
    return result


# --- the attention check against an independent NumPy computation ------------------------------

def numpy_bilinear(mask, height, width):
    """Bilinear resize with half-pixel centres and clamped edges, written out by hand."""
    h, w = mask.shape

    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    top = mask[y0][:, x0] * (1 - fx) + mask[y0][:, x1] * fx
    bottom = mask[y1][:, x0] * (1 - fx) + mask[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def test_mask_mass_share_matches_numpy_on_a_hand_made_mask():
    mask = np.array([[0.9, -0.4, 0.1], [-0.8, 0.5, 0.3]], np.float32)  # 2x3, tanh-like values
    region = np.zeros((7, 5), bool)
    region[1:4, 2:5] = True  # a 3x3 "mouth" on a 7x5 face
    expected_mass = np.maximum(numpy_bilinear(mask.astype(np.float64), 7, 5), 0)
    expected = expected_mass[region].sum() / expected_mass.sum()
    inside, area = region_mass_share(mask, region)
    assert inside == pytest.approx(expected, abs=1e-5)
    assert area == pytest.approx(9 / 35)
    # Negative weights count for nothing: only the positive part is mass.
    assert inside != pytest.approx(np.abs(numpy_bilinear(mask, 7, 5))[region].sum()
                                   / np.abs(numpy_bilinear(mask, 7, 5)).sum(), abs=1e-3)


def test_attention_check_means_and_faces_without_positive_mass():
    rng = np.random.default_rng(0)
    masks = [np.tanh(rng.normal(size=(3, 3))).astype(np.float32) for _ in range(4)] + [-np.ones((3, 3), np.float32)]
    regions = [rng.random((12, 12)) < 0.3 for _ in range(5)]
    result = attention_check(masks, regions)
    pairs = []
    for m, r in zip(masks[:4], regions[:4]):
        mass = np.maximum(numpy_bilinear(m.astype(np.float64), 12, 12), 0)
        pairs.append((mass[r].sum() / mass.sum(), r.mean()))
    pairs = np.array(pairs)
    assert result["faces"] == 5 and result["faces_without_positive_mass"] == 1
    assert result["share_inside"]["mean"] == pytest.approx(pairs[:, 0].mean(), abs=1e-5)
    assert result["share_inside"]["std"] == pytest.approx(pairs[:, 0].std(), abs=1e-5)
    assert result["area_share"]["mean"] == pytest.approx(pairs[:, 1].mean())
    assert result["ratio"]["mean"] == pytest.approx((pairs[:, 0] / pairs[:, 1]).mean(), abs=1e-4)


def test_a_mask_on_the_region_only_puts_all_its_mass_there():
    mask = -np.ones((4, 4), np.float32)
    mask[0, 0] = 0.9
    region = np.zeros((8, 8), bool)
    region[:3, :3] = True  # where the resized positive weight lands
    inside, _ = region_mass_share(mask, region)
    assert inside == pytest.approx(1.0)


# --- tables ------------------------------------------------------------------------------------

def test_within_one_std_and_markdown_say_when_a_difference_is_not_clear():
    a = {"mean_accuracy": 0.80, "std_accuracy": 0.05}
    assert within_one_std({"mean_accuracy": 0.84, "std_accuracy": 0.01}, a)
    assert not within_one_std({"mean_accuracy": 0.90, "std_accuracy": 0.01}, a)
    config = {k: 1 for k in ("input_size", "backbone", "fc_units", "encoder_units", "stage1_epochs", "stage2_epochs",
                             "patience", "seed")}
    config["backbone_weights"] = None
    from dam_cnn_tf.evaluation.baselines import paired_difference

    rows = [dict(key="a", label="A", folds=2, fold_accuracies=[0.75, 0.85], mean_accuracy=0.8, std_accuracy=0.05,
                 difference_to_reference=0.0, within_one_std_of_reference=True,
                 paired_to_reference=paired_difference([0.75, 0.85], [0.75, 0.85])),
            dict(key="b", label="B", folds=2, fold_accuracies=[0.89, 0.91], mean_accuracy=0.9, std_accuracy=0.01,
                 difference_to_reference=0.1, within_one_std_of_reference=False,
                 paired_to_reference=paired_difference([0.89, 0.91], [0.75, 0.85]))]
    text = experiment_markdown({"title": "T", "dataset": "d", "num_samples": 10, "class_names": ["x", "y"],
                                "protocol": "subject-independent 2-fold", "config": config, "rows": rows,
                                "reference": "a"})
    assert "| A | 2 | 80.00 ± 5.00 | — | — | — | 75.0, 85.0 |" in text
    assert "| B | 2 | 90.00 ± 1.00 | +10.00 ± 4.00 | 2 / 0 / 0 | no | 89.0, 91.0 |" in text
    assert "subject-independent 2-fold" in text


def test_experiment_tables_state_the_budgets_with_their_passes():
    from dam_cnn_tf.paper.experiments import CONFIG_SUMMARY

    config = TrainConfig(stage1_passes=10, stage2_passes=0)
    table = {"title": "T", "dataset": "d", "num_samples": 10, "class_names": ["x", "y"], "protocol": "p",
             "config": {k: getattr(config, k) for k in CONFIG_SUMMARY}, "rows": [], "reference": None}
    text = experiment_markdown(table)
    assert "stage 1 600 steps or 10 passes, the more, stage 2 600 steps, patience" in text
    table["config"]["stage1_epochs"] = 15
    assert "stage 1 15 epochs, stage 2" in experiment_markdown(table)


def test_share_stage1_refuses_a_different_stage1_configuration(tmp_path):
    source, target = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    source.mark_completed("stage1", epochs=1)
    with pytest.raises(SharedStage1Error, match="differ in gamma1"):
        share_stage1(source, target, TrainConfig(), TrainConfig(gamma1=0.0))
    with pytest.raises(SharedStage1Error, match="not completed"):
        share_stage1(target, RunDir(tmp_path / "c"), TrainConfig(), TrainConfig(num_paths=4))
    assert share_stage1(source, source, TrainConfig(), TrainConfig()) is False  # has one already


@pytest.mark.parametrize("field, value", [("fc6_activation", "sigmoid"), ("trunk_shift", 2), ("stage1_passes", 0),
                                          ("probe_passes", 0)])
def test_a_field_stage1_reads_stops_sharing(tmp_path, field, value):
    # Fields added after the list of stage-1 fields was written count for stage 1 by default.
    source, target = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    source.mark_completed("stage1", epochs=1)
    base = TrainConfig(augment=True, fine_tune_from="conv5_1")  # what a trunk shift needs
    with pytest.raises(SharedStage1Error, match=f"differ in {field}"):
        share_stage1(source, target, base, base.replace(**{field: value}))


def test_variants_differing_in_stage2_alone_share_stage1(tmp_path):
    source, target = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    source.mark_completed("stage1", epochs=1)
    (source / "stage1").mkdir()
    (source / "stage1" / "vgg_serd.weights.h5").write_bytes(b"w")
    assert share_stage1(source, target, TrainConfig(), TrainConfig(num_paths=4, stage2_passes=0, alpha_m=1e-4))
    assert (target / "stage1" / "vgg_serd.weights.h5").read_bytes() == b"w"
    assert "stage1" in target.completed()


# --- the experiments at toy size --------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_out(tmp_path_factory):
    """table2, table3 and table4 written to one folder, as a user would (they share runs)."""
    return tmp_path_factory.mktemp("experiments")


@pytest.fixture(scope="module")
def stage_fits(toy_out):
    """Run table4 first, counting how often each stage is actually trained."""
    from dam_cnn_tf.training import fit

    counts = {"stage 1": 0, "stage 2": 0}
    original = fit.fit_rounds

    def counting_fit(model, train, val, epochs, stage_dir, stage, *args, **kwargs):
        counts[stage] += 1
        return original(model, train, val, epochs, stage_dir, stage, *args, **kwargs)

    fit.fit_rounds = counting_fit
    try:
        result = run_experiment("table4", *SYNTHETIC, *TOY, "--out", toy_out)
    finally:
        fit.fit_rounds = original
    return counts, result.output


def test_table4_trains_stage1_once_per_fold_and_shares_it(toy_out, stage_fits):
    counts, output = stage_fits
    assert counts == {"stage 1": 2, "stage 2": 8}  # 2 folds; N = 2, 3, 4, 5 reuse one VGG-SERD
    for fold in ("fold-00", "fold-01"):
        shared = toy_out / "vgg-serd" / fold / "stage1"
        weights = (shared / "vgg_serd.weights.h5").read_bytes()
        metrics = (shared / "metrics.csv").read_text().strip().splitlines()
        assert len(metrics) == 1 + 1  # header + the one epoch of one training
        for n in (2, 3, 4, 5):
            run = toy_out / f"dam-cnn-n{n}" / fold
            assert (run / "stage1" / "vgg_serd.weights.h5").read_bytes() == weights
            assert (run / "stage1" / "metrics.csv").read_text().strip().splitlines() == metrics
            state = read_json(run / "state.json")
            assert state["info"]["stage1"]["shared_from"].endswith(f"vgg-serd/{fold}")
            assert state["info"]["stage2"]["num_paths"] == n
    table = read_json(toy_out / "table4.json")
    assert [r["key"] for r in table["rows"]] == ["vgg-serd", "dam-cnn-n2", "dam-cnn-n3", "dam-cnn-n4", "dam-cnn-n5"]
    for row in table["rows"]:
        per_fold = [read_json(toy_out / row["key"] / f"fold-0{i}" / "test_evaluation.json")["accuracy"]
                    for i in range(2)]
        assert row["fold_accuracies"] == per_fold
        assert row["mean_accuracy"] == pytest.approx(np.mean(per_fold))
        assert row["std_accuracy"] == pytest.approx(np.std(per_fold))
    assert "subject-independent 2-fold" in (toy_out / "table4.md").read_text()
    assert "DAM-CNN (N = 5)" in output
    tsne = cv2.imread(str(toy_out / "table4_tsne.png"))
    assert tsne is not None and tsne.shape[1] > 2 * tsne.shape[0]  # three panels side by side


def test_dam_cnn_experiment_reuses_table4s_vgg_serd(toy_out, stage_fits):
    from dam_cnn_tf.training import fit

    counts = {"stage 1": 0, "stage 2": 0}
    original = fit.fit_rounds

    def counting_fit(model, train, val, epochs, stage_dir, stage, *args, **kwargs):
        counts[stage] += 1
        return original(model, train, val, epochs, stage_dir, stage, *args, **kwargs)

    fit.fit_rounds = counting_fit
    try:
        run_experiment("dam-cnn", *SYNTHETIC, *TOY, "--out", toy_out)
    finally:
        fit.fit_rounds = original
    assert counts == {"stage 1": 0, "stage 2": 2}  # the VGG-SERD of table4 is reused, stage 2 is new
    table = read_json(toy_out / "dam-cnn.json")
    assert [r["key"] for r in table["rows"]] == ["vgg-serd", "dam-cnn"]
    for fold in ("fold-00", "fold-01"):
        state = read_json(toy_out / "dam-cnn" / fold / "state.json")
        assert state["info"]["stage2"]["num_paths"] == TrainConfig().num_paths


def test_table2_reuses_the_shared_vgg_serd_and_draws_attention(toy_out, stage_fits):
    before = (toy_out / "vgg-serd" / "fold-00" / "stage1" / "vgg_serd.weights.h5").stat().st_mtime_ns
    run_experiment("table2", *SYNTHETIC, *TOY, "--out", toy_out)
    assert (toy_out / "vgg-serd" / "fold-00" / "stage1" / "vgg_serd.weights.h5").stat().st_mtime_ns == before
    table = read_json(toy_out / "table2.json")
    assert [r["key"] for r in table["rows"]] == ["vgg-face", "vgg-serd"]
    assert read_json(toy_out / "vgg-face" / "config.json")["use_serd"] is False
    assert table["rows"][1]["fold_accuracies"] == read_json(toy_out / "table4.json")["rows"][0]["fold_accuracies"]
    picture = cv2.imread(str(toy_out / "table2_attention.png"))
    assert picture is not None and picture.shape[1] > 5 * 96  # one face per class (7 classes)


def test_table3_settings_figure_and_attention_check(toy_out, stage_fits):
    result = run_experiment("table3", *SYNTHETIC, *TOY, "--out", toy_out)
    table = read_json(toy_out / "table3.json")
    assert [r["changes"] for r in table["rows"]] == [
        {"use_serd": True, "gamma2": 0.0}, {"use_serd": True, "gamma1": 0.0}, {"use_serd": True}]
    assert read_json(toy_out / "vgg-serd-gamma1-0" / "config.json")["gamma1"] == 0.0
    figure = cv2.imread(str(toy_out / "table3_regularizers.png"))
    assert figure is not None and figure.shape[0] > 3 * 96  # one row per setting
    check = read_json(toy_out / "table3_attention_check.json")
    assert len(check) == 3
    for setting in check.values():
        assert setting["faces"] == 42  # every test face of both folds (6 subjects x 7 classes)
        assert 0.0 < setting["area_share"]["mean"] < 0.5
        # share inside = positive mask mass on the expression pixels / all positive mass. A mask
        # blind to the regions gives the area share (a uniform one exactly that); the toy runs
        # are too short to move SERD from its uniform start, so the check is that the numbers
        # are that pair: every face has positive mass and share inside sits at the area share.
        assert setting["faces_without_positive_mass"] == 0
        assert setting["share_inside"]["mean"] == pytest.approx(setting["area_share"]["mean"], rel=0.2)
    assert "share inside" in result.output


def test_rerun_skips_completed_folds_and_refuses_another_configuration(toy_out, stage_fits):
    fold_file = toy_out / "vgg-face" / "fold-01" / "test_evaluation.json"
    if not fold_file.exists():
        run_experiment("table2", *SYNTHETIC, *TOY, "--out", toy_out)
    before = fold_file.stat().st_mtime_ns
    run_experiment("table2", *SYNTHETIC, *TOY, "--out", toy_out, "--no-figures")
    assert fold_file.stat().st_mtime_ns == before
    result = run_experiment("table2", *SYNTHETIC, *TOY, "--out", toy_out, "--seed", "5", expect_ok=False)
    assert result.exit_code != 0
    assert "holds runs of another configuration" in result.output and "seed" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_options_are_one_line_errors(tmp_path):
    result = run_experiment("table2", *TOY, "--out", tmp_path, expect_ok=False)
    assert result.exit_code != 0 and "--data" in result.output and "--synthetic" in result.output
    result = run_experiment("table4", *SYNTHETIC, *TOY, "--test-data", tmp_path, "--out", tmp_path / "o",
                            expect_ok=False)
    assert result.exit_code != 0 and "--test-data" in result.output
    # Decoders per gender need both genders in every validation part: refused before training.
    result = run_experiment("paths-gender", "--synthetic", "8", "--synthetic-images", "1", *TOY, "--out",
                            tmp_path / "g", expect_ok=False)
    assert result.exit_code != 0 and "gender" in result.output and "--val-fraction" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "g" / "dam-cnn-g-gender").exists()


@pytest.mark.slow
def test_paths_gender_compares_random_and_gender_decoders(tmp_path):
    run_experiment("paths-gender", "--synthetic", "12", "--synthetic-images", "1", *TOY, "--val-fraction", "0.25",
                   "--out", tmp_path)
    table = read_json(tmp_path / "paths-gender.json")
    assert [r["key"] for r in table["rows"]] == ["vgg-serd", "dam-cnn-n2", "dam-cnn-g-gender"]
    state = read_json(tmp_path / "dam-cnn-g-gender" / "fold-00" / "state.json")
    assert state["info"]["stage2"]["num_paths"] == 2  # the two gender values
    assert "shared_from" in state["info"]["stage1"]


@pytest.mark.slow
def test_table11_trains_on_one_dataset_and_tests_on_another(tmp_path):
    from dam_cnn_tf.data.synthetic import make_synthetic_faces, synthetic_dataset_to_folder

    a = make_synthetic_faces(num_subjects=4, images_per_class=1, image_size=32, seed=1,
                             classes=("anger", "happiness", "sadness", "surprise"))
    b = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=32, seed=2,
                             classes=("happiness", "sadness", "surprise", "fear"))
    synthetic_dataset_to_folder(a, tmp_path / "a")
    synthetic_dataset_to_folder(b, tmp_path / "b")
    run_experiment("table11", "--data", tmp_path / "a", "--no-detect", "--test-data", tmp_path / "b", *TOY,
                   "--out", tmp_path / "out")
    table = read_json(tmp_path / "out" / "table11.json")
    assert table["class_names"] == ["happiness", "sadness", "surprise"]
    assert [r["folds"] for r in table["rows"]] == [1, 1]
    assert table["rows"][1]["within_one_std_of_reference"] is None  # one fold: no spread to compare
    assert "n/a (1 fold)" in (tmp_path / "out" / "table11.md").read_text()
    evaluation = read_json(tmp_path / "out" / "cross-dam-cnn" / "fold-00" / "test_evaluation.json")
    assert evaluation["num_samples"] == 2 * 3  # every face of b in the common classes
