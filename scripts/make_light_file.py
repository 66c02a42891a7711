"""Make a preset's light file from its Keras model and record it in the preset's card.

    python scripts/make_light_file.py fer2013-face-resnet
    python scripts/make_light_file.py NAME --ship no --quantize dynamic --presets-dir DIR
    python scripts/make_light_file.py fer2013-face-resnet --ship no --quantize dynamic \
        --validation benchmarks/results/cpu-intel-amx-light-accuracy.json

The light file (``model.tflite``, LiteRT) is converted from the preset's checked
``model.keras`` and compared with it on the card's ``check_faces`` (largest probability
difference, same prediction); the card's ``light`` entry records the result, the SHA-256 of
the Keras model it was made from, and, when the file ships beside the model, its own SHA-256.
``--ship auto`` ships it when the preset stays within 20 MB with it; otherwise it is made on
first use into the user's cache (``dam_cnn_tf.presets.light``). ``--validation`` takes what
``benchmarks/light_accuracy.py`` measured on the preset's validation part and records this
conversion's figures in the entry (its accuracy against the float32 file's, McNemar's test).
``card.md`` is written again.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _build_preset():
    spec = importlib.util.spec_from_file_location("build_preset", REPO / "scripts" / "build_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validation_entry(measured: dict, quantize=None) -> dict:
    """The card's record of one conversion on the validation part, from ``benchmarks/light_accuracy.py``'s JSON."""
    key = f"litert_{quantize or 'float32'}"
    if key not in measured.get("accuracy", {}):
        raise SystemExit(f"--validation: no figures for {key} in it")
    entry, float32 = measured["accuracy"][key], measured["accuracy"]["litert_float32"]
    test = entry["against_litert_float32"]
    return {"faces": measured["faces"]["count"], "accuracy": entry["accuracy"],
            "float32_accuracy": float32["accuracy"],
            "different_predictions_from_keras": entry["parity_with_keras_float32"]["different_predictions"],
            "only_this_right": test["only_first_right"], "only_float32_right": test["only_second_right"],
            "mcnemar_p": test["p_value"], "measured_by": "benchmarks/light_accuracy.py"}


def make(name: str, ship="auto", quantize=None, presets_dir=None, validation=None) -> dict:
    import dam_cnn_tf.presets as presets
    from dam_cnn_tf.presets.light import describe_light_file
    from dam_cnn_tf.training.run_dir import atomic_write_json, atomic_write_text

    if presets_dir is not None:
        presets.PRESETS_DIR = Path(presets_dir)
    presets.checked_model_path(name)  # the Keras model is the one its card describes
    folder = presets.preset_dir(name)
    card = presets.preset_card(name)
    card["light"] = describe_light_file(folder, card, ship=ship, quantize=quantize)
    if validation is not None:
        card["light"]["validation"] = validation_entry(validation, quantize)
    atomic_write_json(folder / presets.CARD_FILE, card)
    atomic_write_text(folder / "card.md", _build_preset().any_card_markdown(card))
    return card["light"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--ship", choices=("auto", "yes", "no"), default="auto",
                        help="ship the file beside model.keras, or have it made on first use [default: auto]")
    parser.add_argument("--quantize", choices=("float16", "dynamic"), default=None,
                        help="LiteRT's weight quantization [default: none, float32]")
    parser.add_argument("--presets-dir", type=Path, default=None, help="[default: the package's presets]")
    parser.add_argument("--validation", type=Path, default=None,
                        help="benchmarks/light_accuracy.py's JSON: record this conversion's validation figures")
    args = parser.parse_args(argv)
    ship = {"auto": "auto", "yes": True, "no": False}[args.ship]
    validation = None if args.validation is None else json.loads(args.validation.read_text(encoding="utf-8"))
    print(json.dumps(make(args.name, ship, args.quantize, args.presets_dir, validation), indent=1))


if __name__ == "__main__":
    main()
