"""A stage's learning rate as its plan gives it: warm-up, then a cosine to zero, or constant."""

from __future__ import annotations


def learning_rate(peak: float, total_steps: int, schedule: str = "cosine", warmup_fraction: float = 0.05):
    """``peak`` itself (constant), or a warm-up to ``peak`` then a cosine decay to zero over
    ``total_steps`` (the optimizer's step count drives it, so a resumed stage continues it)."""
    import keras

    if schedule == "constant" or total_steps < 2:
        return peak
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    warmup = int(round(warmup_fraction * total_steps))
    if warmup < 1:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total_steps)
    # CosineDecay warms up linearly from its initial rate (a tenth of the peak here, so the
    # first update is not wasted) to warmup_target, then decays over decay_steps.
    return keras.optimizers.schedules.CosineDecay(peak / 10.0, decay_steps=max(1, total_steps - warmup),
                                                  warmup_target=peak, warmup_steps=warmup)
