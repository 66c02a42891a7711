"""The ``damcnn-tf`` command line: one click group, a module per command in ``commands/``."""

from __future__ import annotations

import sys

import click

from dam_cnn_tf import __version__
from dam_cnn_tf.runtime import keep_cpu_buffers

keep_cpu_buffers()  # before any command starts TensorFlow


class OneLineErrorGroup(click.Group):
    """A click group whose usage errors are one line (``Error: ...``), like its other errors."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        from dam_cnn_tf import USER_TF_LOG_LEVEL
        from dam_cnn_tf.tf_log import quiet_tensorflow

        quiet_tensorflow(USER_TF_LOG_LEVEL)
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="damcnn-tf")
def main():
    """DAM-CNN for facial expression recognition: train, evaluate, predict, export.

    TensorFlow's own start-up and retracing messages are not shown; set TF_CPP_MIN_LOG_LEVEL
    (0 shows everything) to see TensorFlow's log."""


def _register():
    from dam_cnn_tf.commands.crossval import crossval
    from dam_cnn_tf.commands.demo import demo
    from dam_cnn_tf.commands.evaluate import evaluate
    from dam_cnn_tf.commands.experiment import experiment
    from dam_cnn_tf.commands.export import export
    from dam_cnn_tf.commands.predict import predict
    from dam_cnn_tf.commands.presets import presets
    from dam_cnn_tf.commands.train import train
    from dam_cnn_tf.commands.weights import weights

    for command in (train, crossval, evaluate, predict, export, presets, demo, experiment, weights):
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
