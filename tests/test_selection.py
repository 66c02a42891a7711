"""Nested selection: a recipe chosen per fold on its validation part, never on a test face."""

import numpy as np
import pytest

from cli_helpers import TINY_OPTIONS, invoke, read_json
from dam_cnn_tf.data.protocols import Fold
from dam_cnn_tf.evaluation.selection import (
    Candidate,
    SelectionError,
    ValidationScore,
    check_blind,
    choose,
    read_candidates,
    validation_only,
)
from dam_cnn_tf.recipes.options import ConfigError

FOLD = Fold("f", train=np.arange(0, 10), val=np.arange(10, 14), test=np.arange(14, 20))
PEOPLE = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 4 + ["d"] * 6, dtype=object)
CANDIDATES = (Candidate("defaults", "defaults"), Candidate("less", "fewer blocks", (("dropout", 0.7),)))


def score(accuracy, loss, faces=FOLD.val):
    return ValidationScore(accuracy, loss, np.asarray(faces))


def test_the_best_validation_accuracy_wins_then_the_lower_cross_entropy_then_the_earlier_candidate():
    assert choose(FOLD, CANDIDATES, {"defaults": score(0.5, 1.0), "less": score(0.75, 2.0)}) == "less"
    assert choose(FOLD, CANDIDATES, {"defaults": score(0.75, 1.0), "less": score(0.75, 0.9)}) == "less"
    assert choose(FOLD, CANDIDATES, {"defaults": score(0.75, 0.9), "less": score(0.75, 0.9)}) == "defaults"
    with pytest.raises(SelectionError, match="no validation score for less"):
        choose(FOLD, CANDIDATES, {"defaults": score(0.75, 0.9)})


def test_a_choice_that_would_read_a_test_face_is_refused():
    peeking = {"defaults": score(0.5, 1.0), "less": score(1.0, 0.1, faces=[10, 11, 15])}  # face 15 is a test face
    with pytest.raises(SelectionError, match=r"fold f: the choice would read 1 test face\(s\) \(candidate less"):
        choose(FOLD, CANDIDATES, peeking)
    # Not one of the test part's faces, but a face of a person in it: refused too.
    people = PEOPLE.copy()
    people[13] = "d"  # the last validation face is of a test person
    with pytest.raises(SelectionError, match=r"faces of 1 test person\(s\) \(d"):
        check_blind(FOLD, {"defaults": score(0.5, 1.0)}, people)
    check_blind(FOLD, {"defaults": score(0.5, 1.0)}, PEOPLE)  # validation people only: passes


def test_a_validation_only_fold_keeps_its_parts_and_drops_the_test():
    blind = validation_only(FOLD)
    assert blind.test.size == 0 and np.array_equal(blind.val, FOLD.val) and np.array_equal(blind.train, FOLD.train)


def test_candidates_are_read_in_order_and_bad_files_refused_in_one_line(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text('[defaults]\n[last-block]\nlabel = "the last block"\nfine-tune-from = "conv256_2_conv1_conv"\n')
    candidates = read_candidates(good)
    assert [c.key for c in candidates] == ["defaults", "last-block"]
    assert candidates[1].label == "the last block" and candidates[1].changes == (("fine_tune_from", "conv256_2_conv1_conv"),)
    bad = tmp_path / "bad.toml"
    bad.write_text("[a]\n[b]\nno_such_setting = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[b\] has unknown setting\(s\) no_such_setting"):
        read_candidates(bad)
    bad.write_text("[a]\n")
    with pytest.raises(ConfigError, match="at least two candidates"):
        read_candidates(bad)


@pytest.mark.slow
def test_select_through_the_command_line_tests_only_each_folds_choice(tmp_path):
    candidates = tmp_path / "candidates.toml"
    candidates.write_text('[defaults]\n[slow]\nlabel = "a tenth of the rate"\nalpha_s = 1e-4\n')
    out = tmp_path / "out"
    result = invoke("experiment", "select", "--synthetic", "6", "--synthetic-images", "1", *TINY_OPTIONS,
                    "--folds", "2", "--candidates", candidates, "--baselines", "--out", out)
    table = read_json(out / "select.json")
    assert len(table["choices"]) == 2 and "each fold tested its choice alone" in result.output
    for i, choice in enumerate(table["choices"]):
        chosen, other = choice["chosen"], ({"defaults", "slow"} - {choice["chosen"]}).pop()
        # Both were scored on validation faces only; only the choice has a test evaluation.
        assert set(choice["validation"]) == {"defaults", "slow"} and choice["chosen_on"]["faces"] > 0
        assert (out / "candidates" / chosen / f"fold-{i:02d}" / "test_evaluation.json").exists()
        assert not (out / "candidates" / other / f"fold-{i:02d}" / "test_evaluation.json").exists()
        assert (out / "candidates" / other / f"fold-{i:02d}" / "val_evaluation.json").exists()
        best = max(choice["validation"].values(), key=lambda s: s["accuracy"])["accuracy"]
        assert choice["validation"][chosen]["accuracy"] == best
    rows = {r["key"]: r for r in table["results"]["rows"]}
    assert rows["selected"]["fold_accuracies"] == [c["test"]["accuracy"] for c in table["choices"]]
    assert "baseline-pixels" in rows and "selected" in table["results"]["against_baselines"]
    assert "Each fold's choice" in (out / "select.md").read_text()
    # Validation only: nothing is tested.
    blind = tmp_path / "blind"
    invoke("experiment", "select", "--synthetic", "6", "--synthetic-images", "1", *TINY_OPTIONS,
           "--folds", "2", "--max-folds", "1", "--candidates", candidates, "--validation-only", "--out", blind)
    assert "results" not in read_json(blind / "select.json") and not list(blind.rglob("test_evaluation.json"))


def test_experiment_help_names_the_selection_and_its_candidates():
    from dam_cnn_tf.recipes.candidates import candidates_path

    text = invoke("experiment", "--help").output
    assert "--candidates" in text and "--validation-only" in text
    shipped = read_candidates(candidates_path("face-resnet-small"))
    assert shipped[0].key == "defaults" and shipped[0].changes == ()
    with pytest.raises(ConfigError, match="--candidates no-such-set: no such file"):
        candidates_path("no-such-set")
