"""The canonical expression labels and each dataset's mapping onto them (DESIGN §3)."""

from __future__ import annotations

# The eight labels every dataset maps onto, in this order.
CANONICAL_LABELS = (
    "neutral",
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
)
# The paper's "six prototypical" expressions, and those six plus neutral.
SIX_CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
SEVEN_CLASSES = ("neutral",) + SIX_CLASSES

CLASS_SETS = {6: SIX_CLASSES, 7: SEVEN_CLASSES, 8: CANONICAL_LABELS}

# Spellings found in the public releases, mapped to the canonical names.
LABEL_ALIASES = {
    "neutral": "neutral", "normal": "neutral", "ne": "neutral", "neu": "neutral",
    "anger": "anger", "angry": "anger", "an": "anger", "ang": "anger",
    "contempt": "contempt", "co": "contempt", "con": "contempt",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear", "fea": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "ha": "happiness", "hap": "happiness",
    "sadness": "sadness", "sad": "sadness", "sa": "sadness",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise", "sur": "surprise",
}


class UnknownLabelError(ValueError):
    pass


def canonical_label(name: str) -> str:
    """The canonical name for a label as spelled in some release (case-insensitive)."""
    key = str(name).strip().lower()
    if key not in LABEL_ALIASES:
        raise UnknownLabelError(f"unknown expression label {name!r}")
    return LABEL_ALIASES[key]


def class_set(num_classes: int) -> tuple[str, ...]:
    """The 6-, 7- or 8-class label selection."""
    if num_classes not in CLASS_SETS:
        raise ValueError(f"--classes must be one of 6, 7, 8, got {num_classes}")
    return CLASS_SETS[num_classes]
