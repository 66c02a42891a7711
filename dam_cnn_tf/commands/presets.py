"""``damcnn-tf presets``: the trained models shipped inside the package, with their cards."""

from __future__ import annotations

import click

from dam_cnn_tf.commands.common import handle_user_errors


def _summary(name: str, card: dict) -> str:
    validation = card.get("validation", {})
    baselines = card.get("baselines", {})
    parts = [f"{name}: {card.get('description', '')}".rstrip(": "),
             f"  classes: {', '.join(card.get('class_names', []))}"]
    if validation:
        line = f"  validation accuracy: {100 * validation['accuracy']:.2f}% on {validation['num_samples']} faces"
        if baselines:
            line += " (" + ", ".join(f"{b['label']} {100 * b['accuracy']:.2f}%" for b in baselines.values()) + ")"
        parts.append(line)
    parts.append(f"  input: {card.get('input', '')}")
    parts.append(f"  licence: {card.get('licence', '')}")
    return "\n".join(parts)


@click.command("presets")
@click.argument("name", required=False)
@handle_user_errors
def presets(name):
    """List the trained models shipped with the package, or show NAME's model card.

    A preset's name can stand for MODEL in predict, evaluate and export, and
    dam_cnn_tf.from_preset(NAME) returns it as a Keras model. No download is needed."""
    from dam_cnn_tf.presets import CARD_FILE, PresetError, available_presets, preset_card, preset_dir

    try:
        if name is not None:
            card_md = preset_dir(name) / "card.md"
            click.echo(card_md.read_text(encoding="utf-8") if card_md.is_file()
                       else _summary(name, preset_card(name)))
            return
        names = available_presets()
        if not names:
            click.echo(f"No presets in this installation (each is a folder with model.keras and {CARD_FILE}).")
            return
        click.echo("\n\n".join(_summary(n, preset_card(n)) for n in names))
        click.echo("\nUse one as MODEL, e.g. damcnn-tf predict " + names[0] + " photo.jpg; "
                   "damcnn-tf presets NAME shows its model card.")
    except PresetError as error:
        raise click.ClickException(str(error)) from None
