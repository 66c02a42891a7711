"""The ``damcnn-tf`` command line: one click group, a module per command in ``commands/``."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from dam_cnn_tf import __version__  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="damcnn-tf")
def main():
    """DAM-CNN for facial expression recognition: train, evaluate, predict, export."""


def _register():
    from dam_cnn_tf.weights.cli import weights

    main.add_command(weights)


_register()

if __name__ == "__main__":
    main()
