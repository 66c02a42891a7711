"""The figures of the experiments: attention maps (Fig. 9, Fig. 10), t-SNE (Fig. 6) and the
attention check on faces with known expression regions.

Every figure uses the test faces of the first completed fold, so it shows faces of people
the model never saw; the attention check uses the test faces of every completed fold, each
scored by the model of its own fold.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from dam_cnn_tf.data.pipeline import image_dataset
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.models.vgg_serd import FLATTEN, salient_feature_model
from dam_cnn_tf.paper.attention_check import attention_check
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.evaluation.crossval import fold_dir
from dam_cnn_tf.training.run_dir import RunDir
from dam_cnn_tf.training.stages import build_stage1_model
from dam_cnn_tf.viz.attention import attention_grid
from dam_cnn_tf.viz.tsne import tsne_embedding, tsne_figure

CELL = (96, 96)  # each face drawn at this size, so captions stay legible for small inputs


def load_vgg_serd(run: RunDir, config: TrainConfig, num_classes: int) -> keras.Model:
    """The stage-1 model of a run, from its saved weights."""
    model = build_stage1_model(config.replace(backbone_weights=None), num_classes)
    model.optimizer.build(model.trainable_variables)  # the weights file may hold its state
    model.load_weights(run / "stage1" / "vgg_serd.weights.h5")
    return model


def salient_outputs(vgg_serd: keras.Model, faces: np.ndarray, config: TrainConfig) -> dict:
    """``{"features": (n, D), "attention": (n, h, w)}`` of uint8 faces."""
    front = salient_feature_model(vgg_serd)
    out = front.predict(image_dataset(faces, None, 32, config.input_size, preprocess=False), verbose=0)
    if "attention" in out:
        out["attention"] = out["attention"][..., 0]
    return out


def one_face_per_class(labels, indices, num_classes: int) -> list:
    """The first of ``indices`` of every class that has one, in class order (Fig. 9)."""
    chosen = []
    for k in range(num_classes):
        of_class = [i for i in indices if labels[i] == k]
        if of_class:
            chosen.append(int(of_class[0]))
    return chosen


def attention_figure(run: RunDir, config: TrainConfig, data, indices, path) -> Path:
    """Fig. 9: one test face per class with its SERD mask blended over it."""
    model = load_vgg_serd(run, config, len(data.class_names))
    masks = salient_outputs(model, data.faces[indices], config)["attention"]
    captions = [data.class_names[data.labels[i]] for i in indices]
    attention_grid(data.faces[indices], masks, captions, path, columns=len(indices), cell_size=CELL)
    keras.backend.clear_session()
    return Path(path)


def regularizer_figure(settings: list, data, indices, path) -> Path:
    """Fig. 10: the same faces, one row per regulariser setting ``(label, run, config)``."""
    images, masks, captions = [], [], []
    for label, run, config in settings:
        model = load_vgg_serd(run, config, len(data.class_names))
        masks.extend(salient_outputs(model, data.faces[indices], config)["attention"])
        images.extend(data.faces[indices])
        captions.extend(f"{label}: {data.class_names[data.labels[i]]}" for i in indices)
        keras.backend.clear_session()
    attention_grid(images, masks, captions, path, columns=len(indices), cell_size=CELL)
    return Path(path)


def has_expression_regions(data) -> bool:
    return all("expression_mask" in (s.extras or {}) for s in data.dataset.samples)


def attention_check_of_runs(runs_and_folds: list, config: TrainConfig, data) -> dict:
    """The attention check over the test faces of ``[(run, fold), ...]`` (needs expression masks)."""
    masks, regions = [], []
    for run, fold in runs_and_folds:
        model = load_vgg_serd(run, config, len(data.class_names))
        masks.extend(salient_outputs(model, data.faces[fold.test], config)["attention"])
        regions.extend(data.dataset.samples[i].extras["expression_mask"] for i in fold.test)
        keras.backend.clear_session()
    result = attention_check(masks, regions)
    result["folds"] = len(runs_and_folds)
    return result


def representation_tsne(run: RunDir, config: TrainConfig, data, indices, path, seed: int = 0) -> Path:
    """Fig. 6: t-SNE of raw pixels (R1), salient features (R2) and MPAE codes (R3) of a DAM-CNN run."""
    model = load_model_file(run.model_path)
    encoder = _code_layer(model)
    probe = keras.Model(model.input, {"features": model.get_layer(FLATTEN).output, "code": encoder.output})
    out = probe.predict(image_dataset(data.faces[indices], None, 32, config.input_size, preprocess=False), verbose=0)
    raw = data.faces[indices].reshape(len(indices), -1).astype(np.float32) / 255.0
    panels = [("R1: raw pixels", tsne_embedding(raw, seed)),
              ("R2: salient features", tsne_embedding(out["features"], seed)),
              ("R3: MPAE codes", tsne_embedding(out["code"], seed))]
    keras.backend.clear_session()
    return tsne_figure(panels, data.labels[indices], data.class_names, path)


def _code_layer(model: keras.Model):
    """The MPAE encoder layer (Eq. 6, named "encoder") inside a DAM-CNN inference model."""
    try:
        return model.get_layer("encoder")
    except ValueError:
        raise ValueError(f"{model.name}: no MPAE encoder layer") from None


def _first_completed(out: Path, key: str, folds: list):
    for i, fold in enumerate(folds):
        run = RunDir(fold_dir(out / key, i))
        if "test" in run.completed():
            return run, fold
    return None, None


def attention_check_markdown(results: dict) -> str:
    lines = ["", "## Attention check: share of the SERD mask mass on the expression regions", "",
             "Mask mass: the positive part of SERD's mask M (Eq. 1) after a bilinear resize to the face, "
             "max(resize(M), 0). Share inside = mass on the brow, eye and mouth pixels / all mass; "
             "area share = those pixels / all pixels. Mean ± std over the test faces of every fold.", "",
             "| setting | faces with positive mass / all | share inside (%) | area share (%) | ratio |",
             "|---|---:|---:|---:|---:|"]
    for label, r in results.items():
        usable = r["faces"] - r["faces_without_positive_mass"]
        if usable == 0:
            lines.append(f"| {label} | 0 / {r['faces']} | — | — | — |")
            continue
        lines.append(f"| {label} | {usable} / {r['faces']} | "
                     f"{100 * r['share_inside']['mean']:.1f} ± {100 * r['share_inside']['std']:.1f} | "
                     f"{100 * r['area_share']['mean']:.1f} ± {100 * r['area_share']['std']:.1f} | "
                     f"{r['ratio']['mean']:.2f} ± {r['ratio']['std']:.2f} |")
    lines.append("\nA face whose mask has no positive weight anywhere (e.g. saturated at -1) has no share inside "
                 "and is left out of the means; the first column counts them.")
    return "\n".join(lines) + "\n"


def write_experiment_figures(name: str, data, folds: list, config: TrainConfig, out, log=print) -> dict:
    """The figures (and, on faces with expression regions, the attention check) of an experiment."""
    from dam_cnn_tf.paper.experiments import EXPERIMENTS, VGG_SERD
    from dam_cnn_tf.training.run_dir import atomic_write_json, atomic_write_text

    out = Path(out)
    variants = {v.key: v for v in EXPERIMENTS[name]}
    written = {}
    num_classes = len(data.class_names)
    if name == "table2":
        run, fold = _first_completed(out, VGG_SERD, folds)
        if run is not None:
            indices = one_face_per_class(data.labels, fold.test, num_classes)
            written["attention"] = attention_figure(run, variants[VGG_SERD].config(config), data, indices,
                                                    out / "table2_attention.png")
    elif name == "table3":
        run, fold = _first_completed(out, VGG_SERD, folds)
        keys = [v.key for v in EXPERIMENTS["table3"]]
        if run is not None and all(_first_completed(out, k, folds)[1] is fold for k in keys):
            indices = one_face_per_class(data.labels, fold.test, num_classes)
            short = {"vgg-serd-gamma2-0": "g2=0", "vgg-serd-gamma1-0": "g1=0", VGG_SERD: "both"}
            settings = [(short[k], RunDir(out / k / run.path.name), variants[k].config(config)) for k in keys]
            written["regularizers"] = regularizer_figure(settings, data, indices, out / "table3_regularizers.png")
        if has_expression_regions(data):
            results = {}
            for k in keys:
                runs = [(RunDir(fold_dir(out / k, i)), f) for i, f in enumerate(folds)]
                done = [(run, f) for run, f in runs if "test" in run.completed()]
                if done:
                    results[variants[k].label] = attention_check_of_runs(done, variants[k].config(config), data)
            if results:
                atomic_write_json(out / "table3_attention_check.json", results)
                atomic_write_text(out / "table3_attention_check.md", attention_check_markdown(results))
                written["attention_check"] = out / "table3_attention_check.md"
    elif name == "table4":
        key = f"dam-cnn-n{config.num_paths}" if f"dam-cnn-n{config.num_paths}" in variants else "dam-cnn-n3"
        run, fold = _first_completed(out, key, folds)
        if run is not None:
            written["tsne"] = representation_tsne(run, variants[key].config(config), data, fold.test,
                                                  out / "table4_tsne.png", seed=config.seed)
    for label, path in written.items():
        log(f"{name}: {label} -> {path}")
    return written
