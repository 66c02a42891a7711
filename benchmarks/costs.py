"""Analytic costs of the stage-2 step: floating-point operations and the memory it holds.

Counts multiply-adds of the matrix products only (2 flops each); the elementwise work
(sigmoids, dropout, the Adam update) is left out, it moves memory rather than computing.
"""

from __future__ import annotations

ADAM_SLOTS = 2  # first and second moments


def stage2_flops_per_sample(features: int, encoder_units: int, num_paths: int, fc_units: int, classes: int) -> int:
    """Flops of one MPVS-Net training step per sample (Eq. 6-11).

    Forward: encoder D·H, N decoders N·H·D, FC H·F and F·K. Backward: the decoders and the
    FC layers need gradients for their weights and inputs (2x their forward); the encoder
    only for its weights (1x), its input being data.
    """
    d, h, n, f, k = features, encoder_units, num_paths, fc_units, classes
    forward = d * h + n * h * d + h * f + f * k
    backward = d * h + 2 * (n * h * d + h * f + f * k)
    return 2 * (forward + backward)


def stage2_parameters(features: int, encoder_units: int, num_paths: int, fc_units: int, classes: int) -> dict:
    """Trainable parameters of the MPVS-Net by part."""
    d, h, n, f, k = features, encoder_units, num_paths, fc_units, classes
    return {
        "encoder": d * h + h,
        "decoders": n * (h * d + d),
        "head": h * f + f + f * k + k,
    }


def stage2_training_bytes(features: int, encoder_units: int, num_paths: int, fc_units: int, classes: int,
                          bytes_per_value: int = 4) -> dict:
    """Memory that training holds for the weights, in bytes.

    Each trainable value is held four times in float32: the weight, Adam's two moments and its
    gradient. Per decoder path that is 4·H·D bytes of weights, 3x with the moments, 4x with
    the gradient: 16·H·D bytes (1.64 GB at 25088 x 4096).
    """
    params = stage2_parameters(features, encoder_units, num_paths, fc_units, classes)
    total = sum(params.values())
    per_path = encoder_units * features + features
    copies = 1 + ADAM_SLOTS + 1
    return {
        "parameters": total,
        "weights_bytes": total * bytes_per_value,
        "weights_and_adam_bytes": total * bytes_per_value * (1 + ADAM_SLOTS),
        "training_bytes": total * bytes_per_value * copies,
        "per_path_bytes": per_path * bytes_per_value * copies,
    }
