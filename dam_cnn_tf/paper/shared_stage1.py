"""Reusing one trained stage 1 (VGG-SERD) in the run directory of another model variant.

Variants that differ only in stage 2 (N paths, attribute-specific decoders: Table 4, §4.3.2)
share stage 1 (Algorithm 1, lines 1-3). Instead of training it again, the source run's
``stage1/`` (weights, best checkpoint, metrics.csv) and ``features/`` (the salient-feature
caches) are copied into the variant's run and its ``state.json`` marks stage 1 completed;
``train_stage1`` then loads the weights, and ``extract_features`` reuses the cache because
its fingerprint (faces + weights) matches.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.training.run_dir import RunDir, RunDirError

# The configuration fields only stage 2 reads. Two variants may share a stage 1 (and its
# features) only when every other field agrees: a new field counts for stage 1 until it is
# listed here.
STAGE2_ONLY_FIELDS = (
    "num_paths", "encoder_units", "alpha_m", "alpha_fc", "lam", "per_path_updates", "decoder", "pair_attribute",
    "resample_pairs", "init_from_vgg_serd", "stage2_monitor", "end_to_end",
    "stage2_steps", "stage2_min_steps", "stage2_epochs", "stage2_passes", "stage2_batch_size",
)
STAGE1_FIELDS = tuple(field.name for field in dataclasses.fields(TrainConfig) if field.name not in STAGE2_ONLY_FIELDS)


class SharedStage1Error(RuntimeError):
    pass


def stage1_differences(a: TrainConfig, b: TrainConfig) -> list:
    return [name for name in STAGE1_FIELDS if getattr(a, name) != getattr(b, name)]


def _copy_tree(src: Path, dst: Path, ignore=None) -> None:
    """Copy ``src`` to ``dst`` through a temporary sibling, replacing what was there."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=ignore)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def share_stage1(source: RunDir, target: RunDir, source_config: TrainConfig, target_config: TrainConfig) -> bool:
    """Give ``target`` the completed stage 1 of ``source``; False when it already has one.

    The resume backup of the source is not copied: a completed stage is never resumed.
    """
    if "stage1" in target.completed():
        return False
    differences = stage1_differences(source_config, target_config)
    if differences:
        raise SharedStage1Error(f"{target.path}: cannot share stage 1 of {source.path} "
                                f"(configurations differ in {', '.join(differences)})")
    if "stage1" not in source.completed():
        raise SharedStage1Error(f"{source.path}: stage 1 is not completed, nothing to share")
    target.path.mkdir(parents=True, exist_ok=True)
    _copy_tree(source / "stage1", target / "stage1", ignore=shutil.ignore_patterns("backup", ".*"))
    share_features(source, target)
    info = source.step_info("stage1")
    info["shared_from"] = str(source.path)
    target.write_json("state.json", {"completed": ["stage1"], "info": {"stage1": info}})
    return True


def share_features(source: RunDir, target: RunDir) -> bool:
    """Copy the feature caches of ``source`` into ``target`` when ``target`` has none."""
    if not (source / "features").is_dir() or (target / "features").exists():
        return False
    _copy_tree(source / "features", target / "features", ignore=shutil.ignore_patterns(".*"))
    return True


def wait_until_free(run: RunDir, poll_seconds: float = 15.0, timeout_seconds: float = 24 * 3600,
                    log=print) -> None:
    """Block while another process trains in ``run`` (experiments share runs, e.g. VGG-SERD)."""
    waited = 0.0
    while True:
        try:
            run.acquire()
        except RunDirError as error:
            if waited == 0.0:
                log(f"Waiting: {error}")
            if waited >= timeout_seconds:
                raise
            time.sleep(poll_seconds)
            waited += poll_seconds
            continue
        run.release()
        return
