"""Pretrained VGG-Face weights (paper §3.1): read every published release, convert, load, fetch."""

from dam_cnn_tf.weights.convert import (
    FORMATS,
    LoadReport,
    convert_weights,
    detect_format,
    load_backbone_weights,
    read_converted,
    read_weights,
)
from dam_cnn_tf.weights.download import FILE_SETS, RELEASES, FileSet, Release, download_file_set, download_weights
from dam_cnn_tf.weights.errors import (
    ChecksumError,
    DownloadError,
    MissingLayerError,
    WeightsError,
    WeightsFormatError,
    WeightsShapeError,
)

__all__ = [
    "FILE_SETS",
    "FORMATS",
    "RELEASES",
    "ChecksumError",
    "DownloadError",
    "FileSet",
    "LoadReport",
    "MissingLayerError",
    "Release",
    "WeightsError",
    "WeightsFormatError",
    "WeightsShapeError",
    "convert_weights",
    "detect_format",
    "download_file_set",
    "download_weights",
    "load_backbone_weights",
    "read_converted",
    "read_weights",
]
