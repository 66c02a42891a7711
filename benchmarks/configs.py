"""Sizes of each benchmark suite: ``toy`` (seconds, for tests), ``cpu`` (minutes on 2 cores), ``full``.

Stage 2 runs at the paper's size (25088 → 4096, N = 5; §3.3, Table 1) in ``cpu`` and ``full``:
it is matrix multiplies only, which a CPU runs near its peak. The image sections use 112x112
in ``cpu`` (a quarter of the 224x224 cost) and the paper's 224x224 in ``full``.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple


# keras_adam: float32 with Keras' own element-wise Adam, to show what the fused update saves;
# sgd: float32 with fused momentum SGD (`--optimizer sgd`), one optimizer slot instead of two;
# float32 and the others run with the suite's allocator (--allocator, TensorFlow's BFC pool by
# default, as damcnn-tf); malloc / bfc / tcmalloc / jemalloc: float32 with that allocator
# (benchmarks/allocators.py; tcmalloc and jemalloc are skipped when not installed).
ALLOCATOR_VARIANTS = ("malloc", "bfc", "tcmalloc", "jemalloc")
STAGE2_VARIANTS = ("float32", "xla", "mixed_bfloat16", "mixed_float16", "keras_adam", "sgd", *ALLOCATOR_VARIANTS)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    name: str
    # Sections 1, 2, 5: images.
    image_size: int
    inference_batch: int
    train_batch: int
    image_steps: int  # timed calls per measurement, after one warm-up call
    extraction_images: int
    # Section 3: the stage-2 step.
    features: int  # D, the flattened salient features (7·7·512 at 224x224)
    encoder_units: int  # H
    num_paths: int  # N
    stage2_batch: int
    stage2_steps: int
    stage2_variants: Tuple[str, ...]  # "float32", "xla", "mixed_bfloat16", "mixed_float16", "keras_adam"
    # Section 4: the pair pipeline.
    pipeline_rows: int
    pipeline_batches: int
    # Section 6: peak memory, each probe in its own process.
    memory_paths: Tuple[int, ...] = (2, 5)
    memory_steps: int = 2
    num_classes: int = 7
    fc_units: int = 4096
    # Section 7: the face-resnet backbone, at its native 150x150.
    face_resnet_size: int = 150

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "BenchConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


CONFIGS = {
    "toy": BenchConfig(
        name="toy", image_size=32, inference_batch=2, train_batch=2, image_steps=2, extraction_images=4,
        features=64, encoder_units=16, num_paths=5, stage2_batch=4, stage2_steps=2,
        stage2_variants=("float32", "xla", "mixed_bfloat16", "keras_adam", "sgd"), pipeline_rows=64, pipeline_batches=4,
        memory_steps=1, fc_units=32, face_resnet_size=64,
    ),
    "cpu": BenchConfig(
        name="cpu", image_size=112, inference_batch=8, train_batch=8, image_steps=3, extraction_images=128,
        features=25088, encoder_units=4096, num_paths=5, stage2_batch=32, stage2_steps=3,
        stage2_variants=("float32", "xla", "mixed_bfloat16", "keras_adam", "sgd", "malloc", "tcmalloc"),
        pipeline_rows=1024,
        pipeline_batches=16,
    ),
    "full": BenchConfig(
        name="full", image_size=224, inference_batch=8, train_batch=4, image_steps=3, extraction_images=32,
        features=25088, encoder_units=4096, num_paths=5, stage2_batch=32, stage2_steps=5,
        stage2_variants=("float32", "xla", "mixed_bfloat16", "keras_adam", "sgd", "malloc", "tcmalloc"),
        pipeline_rows=2048,
        pipeline_batches=32, memory_steps=3,
    ),
}
