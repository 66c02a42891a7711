"""The measured sections of the suite; each returns a JSON-ready dict.

``benchmarks.run`` runs each in a process of its own (``benchmarks.worker``), so a section's
memory goes with its process; only the stage-2 step frees its model within the section.

Every comparison is made in one process, the two sides called in turn (A, B, A, B, ...), so
that both see the same machine state.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks.configs import BenchConfig
from benchmarks.costs import stage2_flops_per_sample
from benchmarks.timing import rate, time_interleaved

CLASS_NAMES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")


def _free() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


def _images(cfg: BenchConfig, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (batch, cfg.image_size, cfg.image_size, 3)).astype("float32")


def _vgg16_body(cfg: BenchConfig):
    import keras

    return keras.applications.VGG16(weights=None, include_top=False, input_shape=(cfg.image_size,) * 2 + (3,))


def _forward_fn(model):
    import tensorflow as tf

    @tf.function(autograph=False)
    def forward(x):
        return model(x, training=False)

    return forward


def _target(value: Optional[float], target: float) -> dict:
    met = None if value is None else bool(value >= target)
    return {"ratio": value, "target": target, "met": met}


def _images_per_second(title: str, cfg: BenchConfig, batch: int, ours_then_baseline: dict) -> dict:
    """Images/s of two workloads on ``batch`` images, called in turn, and the first's ratio to
    the second against the 0.9x target (sections 1 and 2)."""
    timings = time_interleaved(ours_then_baseline, cfg.image_steps)
    rates = {f"{name}_images_per_s": rate(batch, timing) for name, timing in timings.items()}
    ours, baseline = rates.values()
    return {"title": title, "image_size": cfg.image_size, "batch": batch, **rates, "timings": timings,
            **_target(ours / baseline, 0.9)}


# --- 1. exported inference against the plain VGG16 body ---------------------------------------
def build_and_export(cfg: BenchConfig, export_dir: str) -> str:
    """Export a DAM-CNN inference model at the suite's size (random weights: speed does not depend on them)."""
    from dam_cnn_tf.export import export_saved_model
    from dam_cnn_tf.models.dam_cnn import build_dam_cnn
    from dam_cnn_tf.models.mpvs_net import MPVSNet
    from dam_cnn_tf.models.vgg_serd import build_vgg_serd, feature_map_shape

    shape = (cfg.image_size, cfg.image_size, 3)
    vgg_serd = build_vgg_serd(cfg.num_classes, input_shape=shape, fc_units=cfg.fc_units)
    h, w, c = feature_map_shape(vgg_serd)
    # One path: the decoders are not exported, so their number does not change the export.
    net = MPVSNet(h * w * c, cfg.num_classes, encoder_units=cfg.encoder_units, num_paths=1, fc_units=cfg.fc_units)
    model = build_dam_cnn(vgg_serd, net)
    path = export_saved_model(model, export_dir, CLASS_NAMES[: cfg.num_classes], version=1, overwrite=True)
    return {"export_path": str(path), "format_paths": _export_formats(model, cfg, Path(export_dir))}


# LiteRT float32 and float16, ONNX: each timed beside the SavedModel when it could be written.
EXPORT_FORMATS = {"litert": ("litert", None), "litert_float16": ("litert", "float16"), "onnx": ("onnx", None)}


def _export_formats(model, cfg: BenchConfig, export_dir: Path) -> dict:
    from dam_cnn_tf.export import ExportError
    from dam_cnn_tf.export_formats import SUFFIXES, export_model_file

    paths = {}
    for name, (fmt, quantize) in EXPORT_FORMATS.items():
        try:
            paths[name] = str(export_model_file(model, export_dir / f"{name}{SUFFIXES[fmt]}",
                                                CLASS_NAMES[: cfg.num_classes], fmt, quantize=quantize, overwrite=True))
        except ExportError as error:  # a missing extra: the section reports it instead of a rate
            paths[name] = {"error": str(error)}
    return paths


def exported_inference(cfg: BenchConfig, export_path: str, format_paths: Optional[dict] = None) -> dict:
    import tensorflow as tf

    images = tf.constant(_images(cfg, cfg.inference_batch))
    serve = tf.saved_model.load(str(export_path)).signatures["serving_default"]
    body = _forward_fn(_vgg16_body(cfg))
    result = _images_per_second("Exported SavedModel inference vs plain VGG16 body", cfg, cfg.inference_batch,
                                {"exported": lambda: serve(image=images), "vgg16_body": lambda: body(images)})
    if format_paths is not None:
        result["formats"] = _format_rates(cfg, images.numpy(), lambda: serve(image=images), format_paths)
    return result


def _format_rates(cfg: BenchConfig, images: np.ndarray, saved_model, format_paths: dict) -> dict:
    """Images/s of each exported file, timed in turn with the SavedModel on the same batch."""
    from dam_cnn_tf.export import ExportError
    from dam_cnn_tf.export_formats import litert_runner, onnx_runner

    fns, rates = {"saved_model": saved_model}, {}
    for name, path in format_paths.items():
        if isinstance(path, dict):
            rates[name] = path
            continue
        try:
            run = onnx_runner(path) if path.endswith(".onnx") else litert_runner(path)
        except ExportError as error:
            rates[name] = {"error": str(error)}
            continue
        fns[name] = lambda run=run: run(images)
    timings = time_interleaved(fns, cfg.image_steps)
    rates.update({name: {"images_per_s": rate(len(images), timing)} for name, timing in timings.items()})
    return rates


# --- 2. the stage-1 step against plain VGG16 + FC fine-tuning ---------------------------------
def _plain_finetune_model(cfg: BenchConfig):
    import keras

    from dam_cnn_tf.optimizers import FusedAdam

    body = _vgg16_body(cfg)
    x = keras.layers.Flatten()(body.output)
    for _ in range(2):
        x = keras.layers.Dense(cfg.fc_units, activation="relu")(x)
        x = keras.layers.Dropout(0.5)(x)
    out = keras.layers.Dense(cfg.num_classes, activation="softmax")(x)
    model = keras.Model(body.input, out, name="vgg16_finetune")
    # The same optimizer as stage 1, so that the ratio is the model's overhead alone.
    model.compile(optimizer=FusedAdam(1e-5), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def stage1_step(cfg: BenchConfig) -> dict:
    from dam_cnn_tf.models.vgg_serd import build_vgg_serd, compile_vgg_serd

    images = _images(cfg, cfg.train_batch)
    labels = np.arange(cfg.train_batch) % cfg.num_classes
    shape = (cfg.image_size, cfg.image_size, 3)
    vgg_serd = compile_vgg_serd(build_vgg_serd(cfg.num_classes, input_shape=shape, fc_units=cfg.fc_units))
    plain = _plain_finetune_model(cfg)
    return _images_per_second("Stage-1 (VGG-SERD) training step vs plain VGG16 + FC fine-tuning step", cfg,
                              cfg.train_batch, {"stage1": lambda: vgg_serd.train_on_batch(images, labels),
                                                "vgg16_fc": lambda: plain.train_on_batch(images, labels)})


# --- 3. the stage-2 step at the paper's size, and the decoders' products -----------------------
def _matmul_gflops(batch: int, inner: int, outer: int, dtype: str, steps: int) -> float:
    import tensorflow as tf

    a = tf.cast(tf.random.uniform((batch, inner)), dtype)
    b = tf.cast(tf.random.uniform((inner, outer)), dtype)
    matmul = tf.function(autograph=False)(lambda: tf.matmul(a, b))
    timing = time_interleaved({"matmul": matmul}, steps)["matmul"]
    return 2.0 * batch * inner * outer / timing["median_s"] / 1e9


def _stage2_batch(cfg: BenchConfig, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = rng.gamma(2.0, 1.0, (rows, cfg.features)).astype("float32")
    targets = rng.gamma(2.0, 1.0, (rows, cfg.num_paths, cfg.features)).astype("float32")
    labels = np.arange(rows) % cfg.num_classes
    return s, labels, targets


def _update_fn(net, jit: bool):
    """Both optimizers' updates alone, from fixed gradients, to split the step's time."""
    import tensorflow as tf

    head_vars, mpae_vars = net.head_variables(), net.mpae_variables()
    head_grads = [tf.fill(v.shape, 1e-6) for v in head_vars]
    mpae_grads = [tf.fill(v.shape, 1e-6) for v in mpae_vars]

    @tf.function(autograph=False, jit_compile=jit)
    def update():
        net.mpae_optimizer.apply(mpae_grads, mpae_vars)
        net.optimizer.apply(head_grads, head_vars)
        return net.mpae_optimizer.iterations + 0

    return update


def stage2_step(cfg: BenchConfig, variant: str) -> dict:
    """One variant: ``float32``, ``xla`` (jit_compile), ``mixed_bfloat16`` / ``mixed_float16``, or
    ``keras_adam`` (float32 with Keras' own element-wise Adam instead of the fused one), or ``sgd``
    (float32, fused momentum SGD: one optimizer slot per weight instead of Adam's two), or
    ``malloc`` / ``bfc`` / ``tcmalloc`` / ``jemalloc`` (float32; the caller starts this process
    with that allocator)."""
    from benchmarks.allocators import active_allocator
    import keras

    from dam_cnn_tf import hparams
    from dam_cnn_tf.models.mpvs_net import MPVSNet
    from dam_cnn_tf.training.distribute import make_optimizer, set_precision

    mixed = variant.split("_", 1)[1] if variant.startswith("mixed_") else None
    compute_dtype = mixed or "float32"
    jit = variant == "xla"
    set_precision(mixed)
    try:
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        net = MPVSNet(cfg.features, cfg.num_classes, encoder_units=cfg.encoder_units, num_paths=cfg.num_paths,
                      fc_units=cfg.fc_units)
        s, labels, targets = _stage2_batch(cfg, cfg.stage2_batch)
        net.mpae.adapt(s)
        if variant == "keras_adam":
            net.compile(optimizer=keras.optimizers.Adam(hparams.ALPHA_FC),
                        mpae_optimizer=keras.optimizers.Adam(hparams.ALPHA_M))
        elif variant == "sgd":
            net.compile(optimizer=make_optimizer("sgd", hparams.ALPHA_FC),
                        mpae_optimizer=make_optimizer("sgd", hparams.ALPHA_M))
        else:
            net.compile(jit_compile=jit)
        build_s = time.perf_counter() - start
        y = {"label": labels, "targets": targets}
        losses = []

        def step():
            logs = net.train_on_batch(s, y, return_dict=True)
            losses.append(float(logs["loss"]))
            return logs

        timings = time_interleaved({"step": step, "update": _update_fn(net, jit)}, cfg.stage2_steps)
        del net, step
        _free()
        gflops_matmul = _matmul_gflops(cfg.stage2_batch, cfg.encoder_units, cfg.num_paths * cfg.features,
                                       compute_dtype, cfg.stage2_steps)
    finally:
        set_precision(None)
    flops = stage2_flops_per_sample(cfg.features, cfg.encoder_units, cfg.num_paths, cfg.fc_units, cfg.num_classes)
    step_s = timings["step"]["median_s"]
    update_s = timings["update"]["median_s"]
    gflops = flops * cfg.stage2_batch / step_s / 1e9
    step = timings["step"]
    return {
        "variant": variant,
        "allocator": active_allocator(),
        "batch": cfg.stage2_batch,
        "samples_per_s": cfg.stage2_batch / step_s,
        "step_s": step_s,
        # Per step, all threads: CPU time in user code and in the kernel, and fresh pages touched.
        "step_user_s": step["user_s"],
        "step_system_s": step["system_s"],
        "step_minor_faults": step["minor_faults"],
        "update_s": update_s,  # both optimizers' updates, timed alone
        "forward_backward_s": max(step_s - update_s, 0.0),
        "build_s": build_s,
        "flops_per_sample": flops,
        "achieved_gflops": gflops,
        "matmul_gflops": gflops_matmul,
        "matmul_dtype": compute_dtype,
        "losses": losses,
        "losses_finite": bool(np.all(np.isfinite(losses))),
        **_target(gflops / gflops_matmul, 0.6),
    }


def decoder_matmul(cfg: BenchConfig) -> dict:
    """``MultiPathDecoder`` (N ``(B, H) x (H, D)`` products on N kernels) against the N paths
    stacked into one ``(H, N·D)`` kernel and computed as one product."""
    import keras
    import tensorflow as tf

    from dam_cnn_tf.layers.decoders import MultiPathDecoder

    h = tf.random.Generator.from_seed(0).uniform((cfg.stage2_batch, cfg.encoder_units))
    layer = MultiPathDecoder(cfg.num_paths, cfg.features)
    layer.build(tuple(h.shape))
    stacked = keras.Variable(tf.concat([k.value for k in layer.kernels], axis=1))
    bias = tf.zeros((cfg.num_paths * cfg.features,))

    def one_product():
        return tf.sigmoid(tf.matmul(h, stacked.value) + bias)

    def forward_backward(forward, variables):
        def run():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(forward())
            return tape.gradient(loss, variables)
        return run

    fns = {
        "layer_forward": tf.function(autograph=False)(lambda: layer(h)),
        "one_product_forward": tf.function(autograph=False)(one_product),
        "layer_forward_backward": tf.function(autograph=False)(
            forward_backward(lambda: layer(h), [v.value for v in layer.trainable_variables])),
        "one_product_forward_backward": tf.function(autograph=False)(forward_backward(one_product, [stacked.value])),
    }
    timings = time_interleaved(fns, cfg.stage2_steps)
    return {
        "title": f"Decoders: {cfg.num_paths} products (the layer) vs one stacked product",
        "batch": cfg.stage2_batch,
        "timings": timings,
        "forward_speedup": timings["one_product_forward"]["median_s"] / timings["layer_forward"]["median_s"],
        "forward_backward_speedup": (
            timings["one_product_forward_backward"]["median_s"] / timings["layer_forward_backward"]["median_s"]
        ),
    }


# --- 4. the pair pipeline against what stage 2 consumes ----------------------------------------
def pair_pipeline(cfg: BenchConfig, workdir: str, consumed_per_s: Optional[float] = None) -> dict:
    from dam_cnn_tf.data.feature_cache import write_feature_cache
    from dam_cnn_tf.data.pairs import sample_pair_targets
    from dam_cnn_tf.data.pipeline import pair_dataset

    rng = np.random.default_rng(0)
    features = rng.random((cfg.pipeline_rows, cfg.features), dtype=np.float32)
    labels = np.arange(cfg.pipeline_rows) % cfg.num_classes
    targets = sample_pair_targets(labels, cfg.num_paths, seed=0)
    chunks = (features[i : i + 256] for i in range(0, cfg.pipeline_rows, 256))
    cache = write_feature_cache(Path(workdir) / "pairs", lambda x: x, chunks, cfg.pipeline_rows, labels=labels,
                                verbose=0)
    results = {}
    for name, source in (("in_memory", features), ("memmap", cache)):
        ds = pair_dataset(source, labels, targets, batch_size=cfg.stage2_batch, seed=0).repeat()
        iterator = iter(ds)
        next(iterator)  # tracing and the first prefetch
        start = time.perf_counter()
        count = 0
        for _ in range(cfg.pipeline_batches):
            s, _ = next(iterator)
            count += int(s.shape[0])
        results[name] = count / (time.perf_counter() - start)
        del iterator, ds
    slowest = min(results.values())
    ratio = slowest / consumed_per_s if consumed_per_s else None
    return {
        "title": "Pair pipeline delivery vs stage-2 consumption",
        "batch": cfg.stage2_batch,
        "num_paths": cfg.num_paths,
        "in_memory_samples_per_s": results["in_memory"],
        "memmap_samples_per_s": results["memmap"],
        "stage2_consumes_samples_per_s": consumed_per_s,
        **_target(ratio, 10.0),
    }


# --- 5. feature extraction against the backbone's forward speed --------------------------------
def feature_extraction(cfg: BenchConfig, workdir: str) -> dict:
    import tensorflow as tf

    from dam_cnn_tf.models.vgg_serd import build_vgg_serd, salient_feature_model
    from dam_cnn_tf.recipes.options import TrainConfig
    from dam_cnn_tf.training.stages import FaceSet, _weights_fingerprint, extract_features

    workdir = Path(workdir)
    n = cfg.extraction_images
    rng = np.random.default_rng(0)
    faces = FaceSet(rng.integers(0, 256, (n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8),
                    np.arange(n) % cfg.num_classes)
    config = TrainConfig(input_size=cfg.image_size, stage1_batch_size=cfg.inference_batch, fc_units=cfg.fc_units)
    vgg_serd = build_vgg_serd(cfg.num_classes, input_shape=(cfg.image_size,) * 2 + (3,), fc_units=cfg.fc_units)
    body = _forward_fn(_vgg16_body(cfg))
    batches = [tf.constant(faces.images[i : i + cfg.inference_batch].astype("float32"))
               for i in range(0, n, cfg.inference_batch)]
    passes = iter(range(1_000_000))

    def extraction():  # a whole pass into a fresh cache, its tracing and fingerprint included
        return extract_features(vgg_serd, faces, workdir / f"features-{next(passes)}", config, verbose=0).features

    def backbone():
        return [body(batch) for batch in batches]

    # Alternated, so both see the same machine state (this shared CPU drifts between two speeds).
    timings = time_interleaved({"extraction": extraction, "backbone": backbone}, cfg.image_steps)
    extraction_s, backbone_s = timings["extraction"]["median_s"], timings["backbone"]["median_s"]
    start = time.perf_counter()
    _weights_fingerprint(salient_feature_model(vgg_serd))  # what extract_features hashes
    fingerprint_s = time.perf_counter() - start
    return {
        "title": "Feature extraction (one stage-2 pass, cached) vs backbone forward",
        "images": n,
        "batch": cfg.inference_batch,
        "extraction_images_per_s": n / extraction_s,
        "backbone_images_per_s": n / backbone_s,
        "weights_fingerprint_s": fingerprint_s,
        "timings": timings,
        "ratio": (n / extraction_s) / (n / backbone_s),
        "target": None,
        "met": None,
    }



# --- 7. the face-resnet backbone: exported DAM-CNN against the same network in Keras, stage 1 ---
def _face_resnet_models(cfg: BenchConfig):
    from dam_cnn_tf.models.dam_cnn import build_dam_cnn
    from dam_cnn_tf.models.mpvs_net import MPVSNet
    from dam_cnn_tf.models.vgg_serd import compile_vgg_serd, feature_map_shape
    from dam_cnn_tf.recipes.options import TrainConfig
    from dam_cnn_tf.training.stages import build_stage1_model

    config = TrainConfig(backbone="face-resnet", input_size=cfg.face_resnet_size, fc_units=cfg.fc_units,
                         classes=cfg.num_classes)
    vgg_serd = compile_vgg_serd(build_stage1_model(config, cfg.num_classes))
    h, w, c = feature_map_shape(vgg_serd)
    net = MPVSNet(h * w * c, cfg.num_classes, encoder_units=cfg.encoder_units, num_paths=1, fc_units=cfg.fc_units)
    return vgg_serd, build_dam_cnn(vgg_serd, net)


def face_resnet(cfg: BenchConfig, workdir: str) -> dict:
    """face-resnet DAM-CNN: exported inference vs the same Keras model, and the stage-1 step
    vs the plain network + FC head (random weights: speed does not depend on them)."""
    import tensorflow as tf

    from dam_cnn_tf.export import export_saved_model

    size = cfg.face_resnet_size
    sized = BenchConfig.from_dict({**cfg.to_dict(), "image_size": size})
    vgg_serd, model = _face_resnet_models(cfg)
    path = export_saved_model(model, str(Path(workdir) / "face_resnet_export"), CLASS_NAMES[: cfg.num_classes],
                              version=1, overwrite=True)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    keras_forward = _forward_fn(model)
    images = tf.constant(_images(sized, cfg.inference_batch))
    inference = _images_per_second("Exported face-resnet DAM-CNN vs the same network as a Keras model", sized,
                                   cfg.inference_batch,
                                   {"exported": lambda: serve(image=images), "keras": lambda: keras_forward(images)})
    train_images = _images(sized, cfg.train_batch)
    labels = np.arange(cfg.train_batch) % cfg.num_classes
    plain = _plain_face_resnet_finetune(cfg)
    stage1 = _images_per_second("face-resnet stage-1 (VGG-SERD) step vs plain face-resnet + FC fine-tuning", sized,
                                cfg.train_batch, {"stage1": lambda: vgg_serd.train_on_batch(train_images, labels),
                                                  "plain_fc": lambda: plain.train_on_batch(train_images, labels)})
    step_s = stage1["timings"]["stage1"]["median_s"]
    return {"title": "face-resnet backbone", "image_size": size, "inference": inference, "stage1": stage1,
            "stage1_step_s": step_s, **_target(inference["ratio"], 0.9)}


def _plain_face_resnet_finetune(cfg: BenchConfig):
    import keras

    from dam_cnn_tf.backbones.face_resnet.model import build_face_resnet
    from dam_cnn_tf.optimizers import FusedAdam

    body = build_face_resnet(include_top=False, input_shape=(cfg.face_resnet_size,) * 2 + (3,))
    x = keras.layers.Flatten()(body.output)
    for _ in range(2):
        x = keras.layers.Dense(cfg.fc_units, activation="relu")(x)
        x = keras.layers.Dropout(0.5)(x)
    out = keras.layers.Dense(cfg.num_classes, activation="softmax")(x)
    model = keras.Model(body.input, out, name="face_resnet_finetune")
    model.compile(optimizer=FusedAdam(1e-5), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
