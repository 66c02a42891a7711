"""``damcnn-tf weights``: convert a published VGG-Face or face-api file, fetch and convert a VGG-Face
release, or fetch face-api's files for face-resnet."""

from __future__ import annotations

import click

from dam_cnn_tf.weights.convert import FORMATS, convert_weights, read_converted
from dam_cnn_tf.weights.download import FILE_SETS, RELEASES, download_file_set, download_weights
from dam_cnn_tf.weights.errors import WeightsError
from dam_cnn_tf.weights.tfjs import is_tfjs_manifest


@click.group("weights")
def weights():
    """Pretrained weights for the backbone: VGG-Face (paper §3.1) or face-resnet."""


@weights.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(("auto",) + FORMATS + ("tfjs",)), default="auto", show_default=True,
              help="Format of SRC; auto detects it from the content.")
@click.option("--colour-order", type=click.Choice(("rgb", "bgr")), default="rgb", show_default=True,
              help="Input colour order of a deepface file's first layer (ignored for other formats).")
def convert_command(src, dst, fmt, colour_order):
    """Convert SRC (vgg_face.mat, VGG_FACE.caffemodel, keras-vggface or deepface .h5, or face-api's
    face_recognition_model-weights_manifest.json for face-resnet) to DST."""
    if fmt == "tfjs" or (fmt == "auto" and is_tfjs_manifest(src)):
        return _convert_face_resnet(src, dst)
    try:
        path = convert_weights(src, dst, fmt, colour_order=colour_order)
        stored, attrs = read_converted(path)
    except (WeightsError, OSError) as error:
        raise click.ClickException(str(error)) from None
    size = attrs["input_size"]
    click.echo(
        f"{path}: {len(stored)} layers from {attrs['source_format']} ({attrs['source_sha256'][:12]}…), "
        f"input {'x'.join(map(str, size)) if len(size) else 'any size'}, BGR minus mean"
    )


def _convert_face_resnet(src, dst):
    from dam_cnn_tf.backbones.face_resnet.weights import convert_face_resnet, read_face_resnet_weights

    try:
        path = convert_face_resnet(src, dst)
        layers = read_face_resnet_weights(path)
    except (WeightsError, OSError) as error:
        raise click.ClickException(str(error)) from None
    values = sum(array.size for arrays in layers.values() for array in arrays)
    click.echo(f"{path}: face-resnet weights, {len(layers)} layers, {values:,} values from {src}; "
               f"use with --backbone face-resnet --backbone-weights {path}")


@weights.command("download")
@click.argument("source", type=click.Choice(sorted(RELEASES) + sorted(FILE_SETS)))
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where downloads are kept, face-resnet's two files too "
                   "(default: $DAMCNN_WEIGHTS_CACHE or ~/.cache/dam_cnn_tf/weights).")
@click.option("--sha256", default=None, help="Expected SHA-256 of the download; pins it.")
@click.option("--url", default=None, help="Fetch from this address instead of the registry's.")
@click.option("--base-url", default=None, help="Replace the registry's base address (also $DAMCNN_WEIGHTS_BASE_URL).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Converted weights file (default: <cache-dir>/<source>.weights.h5).")
def download_command(source, cache_dir, sha256, url, base_url, output):
    """Fetch SOURCE, verify its checksum and convert it for the backbone (face-resnet: fetch
    face-api's manifest and .bin, SHA-256 pinned, which the backbone reads as they are)."""
    if source in FILE_SETS:
        return _download_file_set(source, cache_dir, base_url, sha256=sha256, url=url, output=output)
    release = RELEASES[source]
    click.echo(f"{release.name}: {release.licence}")
    try:
        result = download_weights(source, cache_dir, sha256=sha256, url=url, base_url=base_url,
                                  convert_to=output, echo=click.echo)
    except (WeightsError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{result.converted}: converted from {result.path}")


def _download_file_set(source, cache_dir, base_url, **single_file_options):
    given = [f"--{name}" for name, value in single_file_options.items() if value]
    if given:
        raise click.UsageError(f"{', '.join(given)}: not for {source}, whose files are pinned and need no conversion")
    click.echo(f"{source}: {FILE_SETS[source].licence}")
    try:
        manifest = download_file_set(source, cache_dir, base_url=base_url)
    except (WeightsError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{manifest}: verified with its {', '.join(f.filename for f in FILE_SETS[source].files[:-1])}; "
               f"use it as it is: build_face_resnet(weights={str(manifest)!r}) or "
               f"--backbone face-resnet --backbone-weights {manifest}")


if __name__ == "__main__":
    weights()
