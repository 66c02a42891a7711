"""Run the benchmark suite: ``python -m benchmarks.run --config cpu|full|toy [--json out.json]``.

Prints one table and, with ``--json``, writes every figure (and the machine it came from).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from benchmarks.allocators import ALLOCATORS, AllocatorError, onednn_enabled, preload_env  # noqa: E402
from benchmarks.configs import ALLOCATOR_VARIANTS, CONFIGS, STAGE2_VARIANTS, BenchConfig  # noqa: E402
from benchmarks.report import format_table  # noqa: E402
from benchmarks.worker import WorkerError, run_worker  # noqa: E402

SECTIONS = ("inference", "stage1", "stage2", "decoders", "pipeline", "extraction", "memory", "face_resnet")
GIB = 1 << 30


# The instruction sets that decide TensorFlow's CPU matmul speed (the two machine types here
# differ by about 2x: one has AVX-512 and AMX, the other AVX2 only).
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> list:
    """Which of ``NOTABLE_FLAGS`` this CPU has (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in NOTABLE_FLAGS if flag in present]
    except OSError:
        pass
    return []


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cpu_flags": cpu_flags(),
        # With oneDNN on, TensorFlow's CPU tensors come from oneDNN's allocator (a pool).
        "onednn": onednn_enabled(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": memory,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "platform": platform.platform(),
        # Other work on the machine skews every figure; the load average says how much there was.
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def memory_section(cfg: BenchConfig, export_path: str) -> dict:
    from benchmarks.costs import stage2_training_bytes

    probes = {"baseline": run_worker("probe_baseline", cfg)}
    for n in cfg.memory_paths:
        result = run_worker("probe_stage2", cfg, num_paths=n)
        result["expected"] = stage2_training_bytes(cfg.features, cfg.encoder_units, n, cfg.fc_units, cfg.num_classes)
        probes[f"stage2_n{n}"] = result
    probes["inference"] = run_worker("probe_inference", cfg, export_path=export_path)
    largest = max(cfg.memory_paths)
    peak = probes[f"stage2_n{largest}"]["peak_bytes"]
    paper_size = cfg.features == 25088 and cfg.encoder_units == 4096 and largest == 5
    return {
        "title": "Peak resident memory, each workload in its own process",
        "probes": probes,
        "largest_num_paths": largest,
        "stage2_peak_gib": peak / GIB,
        "target_gib": 12.0,
        # The 12 GiB target is for the paper's size; smaller suites report without judging.
        "met": bool(peak < 12 * GIB) if paper_size else None,
    }


def _stage2_variant(cfg: BenchConfig, variant: str) -> dict:
    if variant not in ALLOCATOR_VARIANTS:
        return run_worker("stage2_step", cfg, variant=variant)
    try:
        env = preload_env(variant)
    except AllocatorError as error:
        return {"variant": variant, "skipped": str(error)}
    return run_worker("stage2_step", cfg, env=env, variant=variant)


def stage2_section(cfg: BenchConfig) -> dict:
    variants = {v: _stage2_variant(cfg, v) for v in cfg.stage2_variants}
    first = variants[cfg.stage2_variants[0]]
    return {
        "title": f"Stage-2 MPVS-Net step ({cfg.features} -> {cfg.encoder_units}, N = {cfg.num_paths})",
        "features": cfg.features,
        "encoder_units": cfg.encoder_units,
        "num_paths": cfg.num_paths,
        "variants": variants,
        "samples_per_s": first.get("samples_per_s"),
        "ratio": first.get("ratio"),
        "target": first.get("target"),
        "met": first.get("met"),
    }


def run_suite(cfg: BenchConfig, sections, workdir: Path, log=print) -> dict:
    """Run the chosen sections, each in a process of its own; a failed section holds its ``error``."""
    workdir = str(workdir)
    results = {}

    def timed(name, fn, *args, **kwargs):
        log(f"[{time.strftime('%H:%M:%S')}] {name} ...")
        start = time.perf_counter()
        try:
            results[name] = fn(*args, **kwargs)
        except WorkerError as err:
            results[name] = {"error": str(err)}
            log(f"  failed: {err}")
        results[name]["seconds"] = time.perf_counter() - start

    export_path = None
    if "inference" in sections or "memory" in sections:
        timed("export", run_worker, "build_and_export", cfg, export_dir=str(Path(workdir) / "export"))
        export = results.pop("export")
        export_path, format_paths = export.get("export_path"), export.get("format_paths")
    if "memory" in sections:
        timed("memory", memory_section, cfg, export_path)
    if "inference" in sections:
        timed("inference", run_worker, "exported_inference", cfg, export_path=export_path, format_paths=format_paths)
    if "decoders" in sections:
        timed("decoders", run_worker, "decoder_matmul", cfg)
    if "stage2" in sections:
        timed("stage2", stage2_section, cfg)
    if "pipeline" in sections:
        consumed = results.get("stage2", {}).get("samples_per_s")
        timed("pipeline", run_worker, "pair_pipeline", cfg, workdir=workdir, consumed_per_s=consumed)
    if "stage1" in sections:
        timed("stage1", run_worker, "stage1_step", cfg)
    if "extraction" in sections:
        timed("extraction", run_worker, "feature_extraction", cfg, workdir=workdir)
    if "face_resnet" in sections:
        timed("face_resnet", run_worker, "face_resnet", cfg, workdir=workdir)
    return {name: results[name] for name in SECTIONS if name in results}


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` through a temporary file, so no half-written file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=float))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_name", type=click.Choice(sorted(CONFIGS)), default="cpu", show_default=True,
              help="Suite size: toy (seconds), cpu (minutes on 2 cores), full (224x224).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every figure to this JSON file.")
@click.option("--section", "sections", type=click.Choice(SECTIONS), multiple=True,
              help="Run only these sections (repeatable); all by default.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where exports and caches go (a temporary directory by default).")
@click.option("--stage2-batch", type=click.IntRange(min=1), default=None,
              help="Batch size of the stage-2 sections (the config's by default, 32 in cpu and full).")
@click.option("--stage2-variant", "stage2_variants", type=click.Choice(STAGE2_VARIANTS), multiple=True,
              help="Stage-2 variants to time (repeatable); the config's by default.")
@click.option("--allocator", type=click.Choice(ALLOCATORS), default="bfc", show_default=True,
              help="What every section's process takes CPU tensors from: bfc (TensorFlow's pool, as "
                   "damcnn-tf), malloc (TensorFlow's default), tcmalloc or jemalloc (preloaded).")
def main(config_name, json_path, sections, workdir, stage2_batch, stage2_variants, allocator):
    """Benchmark DAM-CNN against the cost of its own backbone."""
    try:
        os.environ.update(preload_env(allocator))  # every worker process inherits it
    except AllocatorError as error:
        raise click.UsageError(str(error)) from None
    cfg = CONFIGS[config_name]
    if stage2_batch is not None:
        cfg = dataclasses.replace(cfg, stage2_batch=stage2_batch)
    if stage2_variants:
        cfg = dataclasses.replace(cfg, stage2_variants=tuple(stage2_variants))
    sections = tuple(sections) or SECTIONS
    start = time.perf_counter()
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="damcnn-bench-") as tmp:
        results = run_suite(cfg, sections, Path(workdir or tmp))
    payload = {
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "config": cfg.to_dict(),
        "machine": {**machine_info(), "allocator": allocator, "load_average_before": load_before},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_seconds": time.perf_counter() - start,
        "sections": results,
    }
    click.echo(format_table(payload))
    if json_path is not None:
        write_json(json_path, payload)
        click.echo(f"wrote {json_path}")
    failed = [f"{name}: {section['error']}" for name, section in results.items() if "error" in section]
    if failed:
        raise click.ClickException("; ".join(failed))


if __name__ == "__main__":
    main()
