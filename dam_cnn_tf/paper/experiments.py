"""The paper's comparisons (Tables 2, 3, 4 and 11, §4.3.2) as sets of model variants.

An experiment is a list of ``Variant``s, each a configuration change and a stage, trained and
tested on the same folds. Every variant lives in ``OUT/<key>/`` (a cross-validation folder of
``run_crossval``: ``fold-XX`` runs, results.json/md, confusion matrix), so experiments written
to the same ``OUT`` share the runs they have in common: Table 3's "both parts of L_reg" is
Table 2's VGG-SERD, and Table 4's VGG-SERD row is the stage 1 every DAM-CNN variant reuses.

Variants that differ only in stage 2 name a ``stage1_from`` variant: its stage 1 is copied
into their runs (``share_stage1``), never trained again. Folds run in order, each fold for
every variant, so an interrupted experiment has whole folds to report and resumes where
it stopped (a completed fold is skipped).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import numpy as np

from dam_cnn_tf.data.protocols import save_folds
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.evaluation.crossval import fold_dir, run_crossval, run_fold
from dam_cnn_tf.training.prepare import PreparedData
from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text
from dam_cnn_tf.paper.shared_stage1 import share_features, share_stage1, wait_until_free

VGG_SERD = "vgg-serd"


class ExperimentError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a table: ``key`` names its folder, ``changes`` its configuration."""

    key: str
    label: str
    changes: tuple = ()  # (field, value) pairs applied to the experiment's configuration
    stage: str = "all"
    stage1_from: Optional[str] = None  # key of the variant whose stage 1 this one reuses

    def config(self, base: TrainConfig) -> TrainConfig:
        return base.replace(**dict(self.changes))


def _dam_cnn(paths: int, prefix: str = "") -> Variant:
    return Variant(f"{prefix}dam-cnn-n{paths}", f"DAM-CNN (N = {paths})", (("num_paths", paths), ("pair_attribute", None)),
                   "all", f"{prefix}{VGG_SERD}")


def _vgg_serd(prefix: str = "", label: str = "VGG-SERD") -> Variant:
    return Variant(f"{prefix}{VGG_SERD}", label, (("use_serd", True),), "1")


EXPERIMENTS = {
    # Table 2: the fine-tuned backbone alone against the backbone with SERD (stage 1 only).
    "table2": (
        Variant("vgg-face", "VGG-Face (no SERD)", (("use_serd", False),), "1"),
        _vgg_serd(),
    ),
    # Table 3 and Fig. 10: the two parts of L_reg (Eq. 3) alone and together.
    "table3": (
        Variant("vgg-serd-gamma2-0", "VGG-SERD, first part of L_reg only (γ2 = 0)",
                (("use_serd", True), ("gamma2", 0.0)), "1"),
        Variant("vgg-serd-gamma1-0", "VGG-SERD, second part of L_reg only (γ1 = 0)",
                (("use_serd", True), ("gamma1", 0.0)), "1"),
        _vgg_serd(label="VGG-SERD, both parts of L_reg"),
    ),
    # The headline comparison: DAM-CNN at the configuration's N on its own VGG-SERD (stage 1).
    "dam-cnn": (
        _vgg_serd(),
        Variant("dam-cnn", "DAM-CNN", (("use_serd", True),), "all", VGG_SERD),
    ),
    # Table 4: DAM-CNN with N = 2..5 paths on one shared VGG-SERD.
    "table4": (_vgg_serd(),) + tuple(_dam_cnn(n) for n in (2, 3, 4, 5)),
    # §4.3.2: random same-class targets (DAM-CNN-r, N = 2) against one decoder per gender (DAM-CNN-g).
    "paths-gender": (
        _vgg_serd(),
        dataclasses.replace(_dam_cnn(2), label="DAM-CNN-r (random targets, N = 2)"),
        Variant("dam-cnn-g-gender", "DAM-CNN-g (one decoder per gender)", (("pair_attribute", "gender"),), "all",
                VGG_SERD),
    ),
    # Table 11: train on one dataset, test on another (common classes); own folders.
    "table11": (
        _vgg_serd("cross-"),
        Variant("cross-dam-cnn", "DAM-CNN", (("pair_attribute", None),), "all", f"cross-{VGG_SERD}"),
    ),
    # The trivial bars alone (training/baselines.py); any other experiment adds them with baselines=True.
    "baselines": (),
}

TITLES = {
    "dam-cnn": "DAM-CNN against its own VGG-SERD",
    "table2": "Table 2: VGG-Face against VGG-SERD",
    "table3": "Table 3: the parts of the SERD regulariser L_reg",
    "table4": "Table 4: DAM-CNN with N paths against VGG-SERD",
    "paths-gender": "§4.3.2: random-target against attribute-specific decoders",
    "table11": "Table 11: cross-dataset",
    "baselines": "Baselines: linear probes on pixels and on frozen backbone features",
    "select": "DAM-CNN with its recipe chosen per fold on validation faces, then tested (nested selection)",
}


def _check_or_record(folder: Path, config: TrainConfig, folds: list, data: PreparedData) -> None:
    """A variant folder holds runs of one configuration and one set of folds; refuse others."""
    saved = folder / "config.json"
    if saved.exists():
        previous = json.loads(saved.read_text())
        current = json.loads(json.dumps(config.to_dict()))
        differing = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if differing:
            raise ExperimentError(f"{folder}: holds runs of another configuration (differs in "
                                  f"{', '.join(differing)}); use another --out")
    saved_folds = folder / "folds.json"
    if saved_folds.exists():
        payload = json.loads(saved_folds.read_text())
        previous = [(f["name"], f["train"], f["val"], f["test"]) for f in payload["folds"]]
        current = [(f.name, f.train.tolist(), f.val.tolist(), f.test.tolist()) for f in folds]
        if previous[:len(current)] != current[:len(previous)] or payload["meta"].get("dataset") != data.dataset.name:
            raise ExperimentError(f"{saved_folds}: holds other folds or another dataset; use another --out")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, config.to_dict())
    save_folds(saved_folds, folds, dataset=data.dataset.name, class_names=list(data.class_names))


def _check_attribute_values(data: PreparedData, folds: list, attribute: str) -> None:
    """Attribute-specific decoders (one per value) need every value in each training and
    validation part: the validation pairs are drawn within the validation part."""
    values = np.asarray(data.dataset.attribute(attribute), dtype=object)
    everything = sorted(set(values.tolist()))
    for fold in folds:
        for part in ("train", "val"):
            present = sorted(set(values[getattr(fold, part)].tolist()))
            if present != everything:
                raise ExperimentError(
                    f"fold {fold.name}: the {part} part has {attribute} {', '.join(map(str, present))} only, "
                    f"not all of {', '.join(map(str, everything))}; decoders per {attribute} need every value "
                    "there (try another --val-fraction, --seed or more subjects)")


def run_experiment(name: str, data: PreparedData, folds: list, config: TrainConfig, out, protocol: str,
                   verbose: int = 1, log=print, baselines: bool = False) -> dict:
    """Every variant of ``name`` on every fold (fold by fold), then its table in ``OUT/name.md/.json``.

    With ``baselines`` (always for the experiment ``baselines``) the table also has the linear
    probes of ``training/baselines.py`` on the same folds, and every model row is compared with
    them fold by fold.
    """
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; one of {', '.join(EXPERIMENTS)}")
    variants = EXPERIMENTS[name]
    if name == "paths-gender":
        missing = [s.subject for s in data.dataset.samples if s.attributes.get("gender") is None]
        if missing:
            raise ExperimentError(f"paths-gender: {data.dataset.name} has {len(missing)} samples without a gender "
                                  "attribute (it needs a dataset with one, such as BAUM-2i or the synthetic faces)")
    out = Path(out)
    configs = {v.key: v.config(config) for v in variants}
    for v in variants:
        if configs[v.key].pair_attribute:
            _check_attribute_values(data, folds, configs[v.key].pair_attribute)
    for v in variants:
        _check_or_record(out / v.key, configs[v.key], folds, data)
    for i, fold in enumerate(folds):
        for v in variants:
            run = RunDir(fold_dir(out / v.key, i))
            if "test" in run.completed():
                continue
            wait_until_free(run, log=log)
            source = RunDir(fold_dir(out / v.stage1_from, i)) if v.stage1_from else None
            if source is not None:
                share_stage1(source, run, configs[v.stage1_from], configs[v.key])
            if verbose:
                log(f"{name}, fold {i + 1}/{len(folds)} ({fold.name}): {v.label}")
            run_fold(data, fold, configs[v.key], run, v.stage, verbose)
            if source is not None:  # the next variant of this fold copies the features too
                share_features(run, source)
    summaries = {v.key: run_crossval(data, folds, configs[v.key], out / v.key, v.label, v.stage, verbose=0)
                  for v in variants}
    probes = {}
    if baselines or not variants:
        from dam_cnn_tf.evaluation.baselines import run_baselines

        probes = run_baselines(data, folds, config, out, log=log if verbose else (lambda *_: None))
    table = experiment_table(name, variants, summaries, config, protocol, data, probes)
    atomic_write_json(out / f"{name}.json", table)
    atomic_write_text(out / f"{name}.md", experiment_markdown(table))
    return table


def within_one_std(a: dict, b: dict) -> bool:
    """The difference of two mean accuracies is no larger than the larger of their stds."""
    return abs(a["mean_accuracy"] - b["mean_accuracy"]) <= max(a["std_accuracy"], b["std_accuracy"])


CONFIG_SUMMARY = ("input_size", "backbone", "backbone_weights", "fc_units", "encoder_units", "num_paths", "dropout",
                  "gamma1", "gamma2", "lam", "alpha_s", "alpha_m", "alpha_fc", "stage1_epochs", "stage2_epochs",
                  "stage1_steps", "stage2_steps", "probe_steps", "stage1_passes", "stage2_passes", "stage1_batch_size",
                  "stage2_batch_size", "patience", "seed")


def _budget(c: dict, stage: int) -> str:
    """``"15 epochs"`` when a stage counts epochs, else its step budget (and its passes on large data)."""
    epochs = c.get(f"stage{stage}_epochs")
    if epochs is not None:
        return f"{epochs} epochs"
    passes = c.get(f"stage{stage}_passes")
    return f"{c.get(f'stage{stage}_steps')} steps" + (f" or {passes} passes, the more" if passes else "")


def experiment_table(name, variants, summaries: dict, config: TrainConfig, protocol: str, data: PreparedData,
                     baselines: dict = None) -> dict:
    """The rows of an experiment; each row compared with the first (the reference), fold by fold,
    and every model row with each baseline."""
    from dam_cnn_tf.evaluation.baselines import paired_difference

    baselines = baselines or {}
    entries = [(v.key, v.label, v.stage, dict(v.changes), summaries[v.key]) for v in variants]
    entries += [(key, s["name"], "baseline", {}, s) for key, s in baselines.items()]
    rows = []
    reference = entries[0][4]
    for key, label, stage, changes, s in entries:
        rows.append({
            "key": key, "label": label, "stage": stage, "changes": changes,
            "folds": s["folds"], "fold_accuracies": s["fold_accuracies"],
            "mean_accuracy": s["mean_accuracy"], "std_accuracy": s["std_accuracy"],
            "pooled_accuracy": s["pooled_accuracy"],
            "difference_to_reference": s["mean_accuracy"] - reference["mean_accuracy"],
            "paired_to_reference": paired_difference(s["fold_accuracies"], reference["fold_accuracies"]),
            # One fold has no spread to compare with (e.g. the cross-dataset test).
            "within_one_std_of_reference": within_one_std(s, reference) if min(s["folds"], reference["folds"]) > 1
            else None,
        })
    against = {row["key"]: {key: paired_difference(row["fold_accuracies"], b["fold_accuracies"])
                            for key, b in baselines.items()}
               for row in rows if row["stage"] != "baseline"} if baselines else {}
    return {
        "experiment": name, "title": TITLES[name], "dataset": data.dataset.name, "protocol": protocol,
        "num_samples": int(len(data.labels)), "class_names": list(data.class_names),
        "config": {k: getattr(config, k) for k in CONFIG_SUMMARY}, "reference": entries[0][0], "rows": rows,
        "baselines": {key: b["name"] for key, b in baselines.items()}, "against_baselines": against,
    }


def experiment_markdown(table: dict) -> str:
    c = table["config"]
    lines = [
        f"# {table['title']}", "",
        f"Dataset {table['dataset']} ({table['num_samples']} faces, {len(table['class_names'])} classes: "
        f"{', '.join(table['class_names'])}); protocol: {table['protocol']}.",
        f"Configuration: input {c['input_size']}x{c['input_size']}, backbone {c['backbone']}"
        f"{' (weights ' + str(c['backbone_weights']) + ')' if c['backbone_weights'] else ' (from scratch)'}, "
        f"FC units {c['fc_units']}, MPAE code {c['encoder_units']}, stage 1 {_budget(c, 1)}, "
        f"stage 2 {_budget(c, 2)}, patience {c['patience']}, seed {c['seed']}.",
        "",
        "| model | folds | accuracy (%) mean ± std | Δ to first row, per-fold mean ± std (points) "
        "| folds won / tied / lost | within 1 std | per fold (%) |",
        "|---|---:|---:|---:|:---:|:---:|---|",
    ]
    for r in table["rows"]:
        folds = ", ".join(f"{100 * a:.1f}" for a in r["fold_accuracies"])
        first = r["key"] == table["reference"]
        paired = r["paired_to_reference"]
        delta = "—" if first else f"{100 * paired['mean']:+.2f} ± {100 * paired['std']:.2f}"
        record = "—" if first else _won_tied_lost(paired)
        within = {True: "yes", False: "no", None: "n/a (1 fold)"}[r["within_one_std_of_reference"]]
        within = "—" if first else within
        lines.append(f"| {r['label']} | {r['folds']} | {100 * r['mean_accuracy']:.2f} ± {100 * r['std_accuracy']:.2f} "
                     f"| {delta} | {record} | {within} | {folds} |")
    lines += ["", "Differences are paired: the same test faces in each fold. \"within 1 std\": the difference "
              "of the means is no larger than the larger of the two standard deviations over folds, i.e. not a "
              "clear difference."]
    lines += _against_baselines_markdown(table)
    return "\n".join(lines) + "\n"


def _won_tied_lost(paired: dict) -> str:
    return f"{paired['wins']} / {paired['ties']} / {paired['losses']}"


def _against_baselines_markdown(table: dict) -> list:
    """Each model row against each baseline, fold by fold (Wilcoxon signed-rank p, two-sided)."""
    against = table.get("against_baselines") or {}
    if not against:
        return []
    labels = {r["key"]: r["label"] for r in table["rows"]}
    keys = list(table["baselines"])
    lines = ["", "Against the baselines (points, per-fold paired differences; folds won / tied / lost; "
             "Wilcoxon signed-rank p):", "",
             "| model | " + " | ".join(table["baselines"][k] for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for row_key, by_baseline in against.items():
        cells = []
        for k in keys:
            d = by_baseline[k]
            p = "n/a" if d["p_value"] is None else f"{d['p_value']:.3f}"
            cells.append(f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} ({_won_tied_lost(d)}; p {p})")
        lines.append(f"| {labels[row_key]} | " + " | ".join(cells) + " |")
    return lines
