"""How long a stage trains, in optimizer steps, and how its learning rate moves.

The paper trains "until the loss converges" on data sets of a few hundred to tens of thousands
of faces. Counted in epochs, the same recipe gives a 150-face data set a sixth of the updates a
900-face one gets; counted in steps, every data set gets enough. A stage here has:

* a budget: ``steps`` optimizer updates (or ``epochs`` whole passes, when given: epochs win);
* a floor: ``min_steps``, before which early stopping may not end the stage;
* passes: on a data set so large that ``steps`` would not cover ``passes`` whole passes over
  it, the budget grows to those passes, and the floor with it (600 steps at batch 32 are two
  thirds of one pass over 28,000 faces);
* validation rounds: Keras' "epoch" is one pass over the training data, or several passes
  where one pass is shorter than ``validate_every_steps`` (a 150-face set would otherwise be
  validated, checkpointed and backed up every five steps);
* a learning rate that warms up linearly over the first ``warmup_fraction`` of the budget and
  then follows a cosine to zero (``schedule="cosine"``), or the paper's constant rate
  (``dam_cnn_tf.training.schedule`` builds it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

# Schedules a stage's learning rate can follow.
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class StageBudget:
    """``fit``'s epochs and steps per epoch for one stage, and its floor in epochs."""

    epochs: int
    steps_per_epoch: int
    min_epochs: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def stage_budget(num_samples: int, batch_size: int, steps: int, min_steps: int = 0,
                 epochs: Optional[int] = None, validate_every_steps: int = 1, passes: int = 0) -> StageBudget:
    """The budget of a stage over ``num_samples`` training faces in batches of ``batch_size``.

    With ``epochs`` the stage runs that many passes (one validation each), as the paper's
    recipes are written; otherwise ``steps`` updates in validation rounds of at least
    ``validate_every_steps``, or ``passes`` whole passes where those are more steps, with
    ``min_steps`` grown in proportion. Either way early stopping waits for ``min_steps`` (at
    most the whole budget).
    """
    one_pass = max(1, math.ceil(num_samples / batch_size))
    if epochs is not None:
        per_epoch, count = one_pass, int(epochs)
    else:
        if steps > 0 and passes * one_pass > steps:
            min_steps = math.ceil(min_steps * passes * one_pass / steps)
            steps = passes * one_pass
        per_epoch = max(1, min(max(one_pass, validate_every_steps), steps))
        count = math.ceil(steps / per_epoch) if steps > 0 else 0
    floor = min(count, math.ceil(min_steps / per_epoch)) if min_steps > 0 else 0
    return StageBudget(epochs=count, steps_per_epoch=per_epoch, min_epochs=floor)
