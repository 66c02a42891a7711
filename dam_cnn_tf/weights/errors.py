"""Errors raised while reading, converting, loading or fetching VGG-Face weights.

Every message is one line and names the file (or layer) concerned, so the command line
can print it as is.
"""

from __future__ import annotations


class WeightsError(ValueError):
    """Base class: something is wrong with a weights file or its use."""


class WeightsFormatError(WeightsError):
    """The file is not in the expected format, or lacks a field the format requires."""


class MissingLayerError(WeightsError):
    """A layer the backbone needs is absent from the file or from the model."""


class WeightsShapeError(WeightsError):
    """A stored array does not have the shape the receiving layer expects."""


class ChecksumError(WeightsError):
    """A downloaded file's SHA-256 is not the expected one."""


class DownloadError(WeightsError):
    """A release could not be fetched."""
