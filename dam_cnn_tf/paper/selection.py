"""``damcnn-tf experiment select``: a recipe chosen per fold on validation faces, then tested.

Every candidate of ``--candidates`` trains on each outer fold's training part and is scored on
its validation part; the fold's choice (``evaluation.selection.choose``) is the only run scored
on the test part. The table reports the chosen runs' test accuracy beside the baselines on the
same folds, with paired per-fold differences, and states every choice: the candidates'
validation scores and the faces and people they were computed on. With ``validation_only``
nothing is tested: the candidates' validation scores alone, for choosing a default.

Runs live in ``OUT/candidates/<key>/fold-XX``; an interrupted selection resumes fold by fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dam_cnn_tf.evaluation.crossval import fold_dir
from dam_cnn_tf.evaluation.reports import mean_std
from dam_cnn_tf.evaluation.selection import (
    choose,
    faces_seen,
    score_choice_on_test,
    score_on_validation,
    subjects_of,
)
from dam_cnn_tf.paper.experiments import Variant, _check_or_record, experiment_markdown, experiment_table
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.training.prepare import PreparedData
from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text

NAME = "select"
SELECTED, SELECTED_STAGE1 = "selected", "selected-vgg-serd"


def candidate_dir(out, key: str) -> Path:
    return Path(out) / "candidates" / key


def run_selection(data: PreparedData, folds: list, config: TrainConfig, candidates, out, protocol: str,
                  verbose: int = 1, log=print, baselines: bool = False, validation_only: bool = False) -> dict:
    """Choose among ``candidates`` on each fold's validation part, test each fold's choice once;
    writes ``OUT/select.json`` and ``OUT/select.md`` (after every fold, so a long run shows its
    progress) and returns the table."""
    out = Path(out)
    configs = {c.key: c.config(config) for c in candidates}
    for c in candidates:
        _check_or_record(candidate_dir(out, c.key), configs[c.key], folds, data)
    subjects = subjects_of(data)
    records = []
    for i, fold in enumerate(folds):
        scores = {}
        for c in candidates:
            if verbose:
                log(f"select, fold {i + 1}/{len(folds)} ({fold.name}): {c.label}, scored on "
                    f"{len(fold.val)} validation faces")
            scores[c.key] = score_on_validation(data, fold, configs[c.key], RunDir(fold_dir(candidate_dir(out, c.key), i)),
                                                verbose)
        chosen = choose(fold, candidates, scores, subjects)
        record = {"fold": fold.name, "chosen": chosen,
                  "validation": {k: {"accuracy": s.accuracy, "cross_entropy": s.cross_entropy} for k, s in scores.items()},
                  "chosen_on": faces_seen(data, fold.val), "test_faces": int(len(fold.test))}
        if verbose:
            log(f"select, fold {i + 1}/{len(folds)}: chose {chosen} on {len(fold.val)} validation faces")
        if not validation_only:
            result = score_choice_on_test(data, fold, configs[chosen], RunDir(fold_dir(candidate_dir(out, chosen), i)),
                                          verbose)
            record["test"] = {key: result[key] for key in ("accuracy", "cross_entropy", "confusion_matrix",
                                                            "stage1_accuracy", "stage1_kept", "stage2_kept_round")
                              if key in result}
        records.append(record)
        _write(out, data, folds, config, candidates, records, protocol, baselines=None, validation_only=validation_only)
    probes = {}
    if baselines and not validation_only:
        from dam_cnn_tf.evaluation.baselines import run_baselines

        probes = run_baselines(data, folds, config, out, log=log if verbose else (lambda *_: None))
    return _write(out, data, folds, config, candidates, records, protocol, probes, validation_only)


def _summary(name: str, accuracies, matrices) -> dict:
    mean, std = mean_std(accuracies)
    summed = np.sum(matrices, axis=0)
    return {"name": name, "folds": len(accuracies), "fold_accuracies": list(accuracies), "mean_accuracy": mean,
            "std_accuracy": std, "pooled_accuracy": float(np.trace(summed) / max(1, summed.sum()))}


def _write(out: Path, data, folds, config, candidates, records, protocol, baselines, validation_only) -> dict:
    table = {"experiment": NAME, "validation_only": validation_only, "folds_done": len(records),
             "folds_total": len(folds), "candidates": [{"key": c.key, "label": c.label, "changes": dict(c.changes)}
                                                        for c in candidates],
             "choices": records}
    complete = len(records) == len(folds)
    if not validation_only and records:
        accuracies = [r["test"]["accuracy"] for r in records]
        matrices = [r["test"]["confusion_matrix"] for r in records]
        rows = [Variant(SELECTED, "DAM-CNN, the candidate chosen per fold on validation")]
        summaries = {SELECTED: _summary(rows[0].label, accuracies, matrices)}
        if all(r["test"].get("stage1_accuracy") is not None for r in records):
            rows.append(Variant(SELECTED_STAGE1, "VGG-SERD (stage 1's own classifier) of the same chosen runs",
                                stage="1"))
            summaries[SELECTED_STAGE1] = _summary(rows[1].label, [r["test"]["stage1_accuracy"] for r in records],
                                                  matrices)
        done = folds[:len(records)]
        table["results"] = experiment_table(NAME, rows, summaries, config, protocol if complete else
                                            f"{protocol} (first {len(records)} of {len(folds)} folds)", data,
                                            baselines if complete else None)
        table["results"]["test_faces"] = int(sum(len(f.test) for f in done))
    atomic_write_json(out / f"{NAME}.json", table)
    atomic_write_text(out / f"{NAME}.md", selection_markdown(table))
    return table


def _percent(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def selection_markdown(table: dict) -> str:
    keys = [c["key"] for c in table["candidates"]]
    lines = []
    if "results" in table:
        lines += experiment_markdown(table["results"]).splitlines() + [""]
    else:
        lines += [f"# Selection on validation faces only ({table['folds_done']} of {table['folds_total']} folds); "
                  "nothing was tested", ""]
    lines += ["## The candidates, scored on each fold's validation part", "",
              "| candidate | settings | validation accuracy (%), mean of folds | validation cross-entropy, mean "
              "| chosen on folds |", "|---|---|---:|---:|---:|"]
    for c in table["candidates"]:
        accuracy = [r["validation"][c["key"]]["accuracy"] for r in table["choices"]]
        loss = [r["validation"][c["key"]]["cross_entropy"] for r in table["choices"]]
        changes = ", ".join(f"{k} = {v}" for k, v in c["changes"].items()) or "as given"
        chosen = sum(r["chosen"] == c["key"] for r in table["choices"])
        lines.append(f"| {c['label']} | {changes} | {100 * np.mean(accuracy):.2f} | {np.mean(loss):.3f} | {chosen} |")
    lines += ["", "## Each fold's choice: what it saw (validation faces of training people only) and, for the "
              "chosen candidate alone, the test part", "",
              "| fold | validation faces (people) | " + " | ".join(f"{k} val. acc. (%)" for k in keys)
              + " | chosen | test faces | test acc. (%) | stage 1 kept |",
              "|---|---|" + "---:|" * len(keys) + "---|---:|---:|---|"]
    for r in table["choices"]:
        seen = r["chosen_on"]
        people = f" ({', '.join(seen['people'])})" if seen["people"] and len(seen["people"]) <= 6 else (
            f" ({len(seen['people'])} people)" if seen["people"] else "")
        test = r.get("test", {})
        lines.append(f"| {r['fold']} | {seen['faces']}{people} | "
                     + " | ".join(_percent(r["validation"][k]["accuracy"]) for k in keys)
                     + f" | {r['chosen']} | {r['test_faces'] if test else '–'} | {_percent(test.get('accuracy'))} "
                     f"| {test.get('stage1_kept', '–')} |")
    lines += ["", "Every validation face is listed by file in select.json (`choices[].chosen_on.paths`). "
              "Ties in validation accuracy go to the lower validation cross-entropy, then to the earlier candidate."]
    return "\n".join(lines) + "\n"
