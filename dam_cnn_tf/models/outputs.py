"""The names of the inference model's outputs (Fig. 2), importable without TensorFlow."""

PROBABILITIES = "probabilities"
ATTENTION = "attention"
