"""Scoring trained models: metrics and reports, the trivial baselines on the same folds, and the
one routine that trains a run and scores it (``protocol``), which ``train``, cross-validation,
the paper's experiments and the preset build all use."""
