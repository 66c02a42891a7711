"""Moved: budgets to ``dam_cnn_tf.recipes.budget``, the learning rate to
``dam_cnn_tf.training.schedule``; these names keep working until release 0.3."""

from dam_cnn_tf.recipes.budget import SCHEDULES, StageBudget, stage_budget  # noqa: F401
from dam_cnn_tf.training.schedule import learning_rate  # noqa: F401
