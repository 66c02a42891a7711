"""Stage 2 alone, again, on the stage-1 features a cross-validation left, with other settings.

Used to choose stage 2's settings on validation faces only (docs/results.md): for each fold of
a ``crossval`` output, MPVS-Net is trained on the fold's cached training features with the
run's configuration plus the options given, and the round kept by the run's own rule (lowest
validation cross-entropy) is reported; the test part is never read.

    python benchmarks/stage2_sweep.py results/ck48 --folds 0 1 2 --set alpha_m=1e-3 --set alpha_fc=1e-3
    python benchmarks/stage2_sweep.py results/ck48 --folds 0 1 2 --logistic 0.1
    python benchmarks/stage2_sweep.py results/ck48 --folds 0 1 2 --set init_from_vgg_serd=false --set encoder_units=1024
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_setting(text: str):
    name, _, value = text.partition("=")
    if value.lower() in ("true", "false"):
        return name.replace("-", "_"), value.lower() == "true"
    for kind in (int, float):
        try:
            return name.replace("-", "_"), kind(value)
        except ValueError:
            pass
    return name.replace("-", "_"), value


def sweep_fold(fold_dir: Path, config, verbose: int = 0) -> dict:
    import keras
    from sklearn.metrics import accuracy_score, log_loss

    from dam_cnn_tf.data.feature_cache import FeatureCache
    from dam_cnn_tf.training import stages
    from dam_cnn_tf.training.run_dir import RunDir

    train_cache = FeatureCache.open(fold_dir / "features" / "train")
    val_cache = FeatureCache.open(fold_dir / "features" / "val")
    # train_mpvs_net reads only the faces' labels: the images are not needed.
    train = stages.FaceSet(np.zeros((len(train_cache), 1, 1, 3), np.uint8), train_cache.labels)
    val = stages.FaceSet(np.zeros((len(val_cache), 1, 1, 3), np.uint8), val_cache.labels)
    classes = json.loads((fold_dir / "classes.json").read_text())["class_names"]
    vgg_serd = None
    if stages.needs_vgg_serd(config):
        # What reaches back into stage 1 reads the fold's own VGG-SERD.
        vgg_serd = stages.build_stage1_model(config, len(classes))
        vgg_serd.load_weights(fold_dir / "stage1" / "vgg_serd.weights.h5")
    with tempfile.TemporaryDirectory(prefix="stage2-sweep-") as tmp:
        keras.utils.set_random_seed(config.seed)  # as train_dam_cnn does
        start = time.monotonic()
        net = stages.train_mpvs_net(config, (train_cache, val_cache), train, val, RunDir(Path(tmp)), len(classes),
                                    vgg_serd, verbose=verbose)
        seconds = time.monotonic() - start
        rows = json.loads((Path(tmp) / "stage2" / "metrics.json").read_text())
        kept = stages.stage2_kept_round(RunDir(Path(tmp)))  # 0: the start, which no round beat
    # The kept weights scored on the validation features themselves.
    probabilities = net.predict(np.asarray(val_cache.features, np.float32), verbose=0)
    return {"fold": fold_dir.name, "kept_round": kept, "rounds": len(rows),
            "val_cross_entropy": float(log_loss(val_cache.labels, probabilities, labels=range(len(classes)))),
            "val_accuracy": float(accuracy_score(val_cache.labels, probabilities.argmax(axis=1))),
            "train_accuracy": rows[kept - 1]["accuracy"] if kept else None, "seconds": round(seconds, 1),
            "round_val_cross_entropy": [row["val_cross_entropy"] for row in rows]}


def logistic_fold(fold_dir: Path, c: float) -> dict:
    """A logistic regression in place of MPVS-Net, on the same cached stage-1 features: whether
    what stage 2 loses is MPVS-Net's or that of any head trained afresh on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dam_cnn_tf.data.feature_cache import FeatureCache

    train = FeatureCache.open(fold_dir / "features" / "train")
    val = FeatureCache.open(fold_dir / "features" / "val")
    features = np.asarray(train.features, np.float32)  # read from the memory-mapped cache once
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features, train.labels)
    probabilities = model.predict_proba(np.asarray(val.features, np.float32))
    predicted = model.classes_[probabilities.argmax(axis=1)]
    return {"fold": fold_dir.name, "val_cross_entropy": float(log_loss(val.labels, probabilities, labels=model.classes_)),
            "val_accuracy": float(np.mean(predicted == val.labels)),
            "train_accuracy": float(model.score(features, train.labels))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crossval_dir", type=Path)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE")
    parser.add_argument("--logistic", type=float, metavar="C",
                        help="fit a logistic regression (inverse regularisation C) instead of MPVS-Net")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list")
    args = parser.parse_args(argv)
    if args.logistic is not None and args.set:
        parser.error("--logistic takes no --set: it trains no MPVS-Net")

    from dam_cnn_tf.recipes.options import config_from_saved

    # The run's resolved configuration, with the settings given on top (a misspelt one is refused).
    saved = config_from_saved(json.loads((args.crossval_dir / "config.json").read_text()), args.crossval_dir)
    try:
        config = saved.replace(**dict(map(parse_setting, args.set)))
    except TypeError as error:
        raise SystemExit(f"--set: {error}") from None
    folds = [args.crossval_dir / f"fold-{fold:02d}" for fold in args.folds]
    if args.logistic is not None:
        label = [f"logistic C={args.logistic:g}"]
        results = [logistic_fold(fold, args.logistic) for fold in folds]
    else:
        label = args.set
        results = [sweep_fold(fold, config) for fold in folds]
    for row in results:
        print(json.dumps(row))
    mean = {key: float(np.mean([row[key] for row in results])) for key in ("val_cross_entropy", "val_accuracy")}
    print(f"{args.crossval_dir.name} {' '.join(label) or '(as run)'}: validation cross-entropy "
          f"{mean['val_cross_entropy']:.4f}, accuracy {100 * mean['val_accuracy']:.2f} %, mean of {len(results)} folds")
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.exists() else []
        previous.append({"run": str(args.crossval_dir), "set": label, "folds": results, "mean": mean})
        args.json.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    main()
