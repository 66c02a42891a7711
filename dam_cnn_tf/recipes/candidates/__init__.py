"""Sets of candidate variants that ``damcnn-tf experiment select`` chooses among, fold by fold,
on each fold's validation part (``dam_cnn_tf.evaluation.selection``): one TOML table a variant,
in order of preference for ties."""

from __future__ import annotations

from pathlib import Path

from dam_cnn_tf.recipes.options import ConfigError

CANDIDATES_DIR = Path(__file__).resolve().parent


def candidate_set_names() -> list:
    return sorted(path.stem for path in CANDIDATES_DIR.glob("*.toml"))


def candidates_path(name_or_path) -> Path:
    """A candidates file: a path, or the name of one shipped here."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CANDIDATES_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"--candidates {name_or_path}: no such file, nor a shipped set "
                      f"({', '.join(candidate_set_names()) or 'none'})")
